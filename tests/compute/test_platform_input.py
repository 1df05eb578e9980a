"""Platform staff cannot make the portal run commands or read its own files through a
host URI or a kubeconfig: admin refuses them with a clear field error, and a marker
script proves nothing ran (the real libvirt client and Kubernetes client would run it)."""

from __future__ import annotations

import base64
import textwrap

import pytest
import yaml

from compute.models import Host, KubernetesCluster
from compute.services.clusters import kubeconfig_inline
from compute.services.hosts import host_check, host_uri_check
from portal.exceptions import ValidationError

pytestmark = pytest.mark.unit


@pytest.fixture
def marker(tmp_path):
    """An executable that leaves ``ran`` behind if anything executes it."""
    ran = tmp_path / "ran"
    script = tmp_path / "payload.sh"
    script.write_text(f"#!/bin/sh\ntouch {ran}\n")
    script.chmod(0o755)
    return script, ran


# --- Host URIs ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "uri",
    [
        "qemu:///system",
        "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
        "qemu+tcp://127.0.0.1:16510/system",
        "qemu+tls://node2.example.com/system?no_verify=1",
        "qemu+ssh://root@node2/system?mode=direct&proxy=native",
        "qemu+libssh2://isotope@10.0.0.2/system?known_hosts_verify=normal",
        "qemu+tcp://[fd00::2]:16509/system",
        "test:///default",
    ],
)
def test_ordinary_hypervisor_uris_are_accepted(uri):
    assert host_uri_check(f"  {uri} ") == uri


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("qemu+ext:///system?command=/bin/sh", "ext transport runs an arbitrary command"),
        ("qemu+ssh://node2/system?command=/tmp/x", "?command= names a program"),
        ("qemu+ssh://node2/system?netcat=/tmp/nc", "?netcat= names a program"),
        ("qemu+unix:///system?socket=/tmp/evil.sock", "?socket= must be one of"),
        ("qemu+ssh://-oProxyCommand=touch@node2/system", "user name may only hold"),
        ("qemu+ssh://-oProxyCommand=x/system", "needs a host name or address"),
        ("qemu+ssh://node2/system?keyfile=/root/.ssh/id_rsa", "names a file on the portal"),
        ("qemu+tls://node2/system?pkipath=/etc", "names a file on the portal"),
        ("qemu+ssh://node2/system?sshauth=$(touch%20x)", "is not allowed"),
        ("qemu+ssh://node2/system?whatever=1", "unknown parameter"),
        ("qemu+ssh://u:secret@node2/system", "passwords do not belong"),
        ("qemu+tcp:///system", "needs a host name"),
        ("qemu://node2/system", "name the transport"),
        ("test+tcp://node2/default", "test driver is local only"),
        ("xen:///system", "driver 'xen' is not supported"),
        ("qemu+tcp://node2:99999/system", "not a valid URI"),
        ("", "enter a libvirt URI"),
    ],
)
def test_uris_that_run_commands_or_read_files_are_refused_with_a_reason(uri, says):
    with pytest.raises(ValidationError) as refused:
        host_uri_check(uri)
    assert says in refused.value.errors["uri"][0]


def test_adding_a_command_running_host_in_admin_is_a_field_error_and_runs_nothing(
    client, demo, marker
):
    script, ran = marker
    client.force_login(demo.admin)
    data = {
        "name": "evil",
        "uri": f"qemu+ext:///system?command={script}",
        "virt_type": "auto",
        "cpu_ratio": "4.00",
        "memory_ratio": "1.00",
        "enabled": "on",
        "labels": "{}",
    }
    response = client.post("/admin/compute/host/add/", data)
    assert response.status_code == 200  # the form again, with the error
    assert "ext transport runs an arbitrary command" in response.content.decode()
    assert not Host.objects.filter(name="evil").exists()
    assert not ran.exists()


def test_a_stored_command_uri_is_never_opened_by_check_now(db, marker):
    script, ran = marker
    host = Host.objects.create(name="old", uri=f"qemu+ext:///system?command={script}")
    host = host_check(host)
    assert not host.reachable and "ext transport" in host.message
    assert not ran.exists()


# --- Kubeconfigs ---------------------------------------------------------------------------
def kubeconfig(user: dict, cluster: dict | None = None) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "c", "cluster": {"server": "https://127.0.0.1:9", **(cluster or {})}}
            ],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


def exec_user(script) -> dict:
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(script),
            "interactiveMode": "Never",
        }
    }


@pytest.mark.parametrize(
    ("user", "cluster", "says"),
    [
        (
            {"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}},
            None,
            "auth-provider",
        ),
        (
            {"client-certificate": "/etc/ssl/c.pem", "client-key-data": "eA=="},
            None,
            "client-certificate",
        ),
        ({"client-certificate-data": "eA==", "client-key": "/root/k.pem"}, None, "client-key"),
        ({"tokenFile": "/var/run/secrets/token"}, None, "tokenFile"),
        ({"token": "t"}, {"certificate-authority": "/etc/ssl/ca.pem"}, "certificate-authority"),
    ],
)
def test_kubeconfigs_with_plugins_or_file_paths_are_refused(user, cluster, says):
    with pytest.raises(ValidationError) as refused:
        kubeconfig_inline(kubeconfig(user, cluster))
    message = refused.value.errors["kubeconfig"][0]
    assert f"'{says}'" in message and "portal host" in message


@pytest.mark.parametrize(
    "text",
    ["clusters: {a: 1}", "clusters: [1, 2]", "clusters: [{name: c, cluster: [x]}]"],
)
def test_malformed_kubeconfigs_are_a_clear_error_not_a_crash(text):
    with pytest.raises(ValidationError):
        kubeconfig_inline(text)


def test_an_embedded_kubeconfig_is_accepted_as_is():
    text, server = kubeconfig_inline(
        kubeconfig({"token": "abc"}, {"certificate-authority-data": "eA=="})
    )
    assert server == "https://127.0.0.1:9"
    assert yaml.safe_load(text)["users"][0]["user"] == {"token": "abc"}


def test_the_seeded_local_kubeconfig_may_embed_files_only_from_its_own_folder(tmp_path):
    (tmp_path / "ca.pem").write_bytes(b"CA")
    (tmp_path / "token").write_text("secret-token\n")
    text, _ = kubeconfig_inline(
        kubeconfig({"tokenFile": "token"}, {"certificate-authority": "ca.pem"}), base=tmp_path
    )
    data = yaml.safe_load(text)
    assert data["users"][0]["user"] == {"token": "secret-token"}
    assert (
        data["clusters"][0]["cluster"]["certificate-authority-data"]
        == base64.b64encode(b"CA").decode()
    )
    with pytest.raises(ValidationError, match="points outside"):
        kubeconfig_inline(kubeconfig({"client-key": "/etc/passwd"}), base=tmp_path)


def test_an_exec_kubeconfig_in_admin_is_a_field_error_and_runs_nothing(client, demo, marker):
    script, ran = marker
    client.force_login(demo.admin)
    data = {"name": "evil", "enabled": "on", "kubeconfig": kubeconfig(exec_user(script))}
    response = client.post("/admin/compute/kubernetescluster/add/", data)
    assert response.status_code == 200
    page = response.content.decode()
    assert "uses &#x27;exec&#x27;, which runs a credential plugin command" in page, (
        textwrap.shorten(page, 3000)
    )
    assert not KubernetesCluster.objects.filter(name="evil").exists()
    assert not ran.exists()


@pytest.mark.django_db(transaction=True)
def test_two_clusters_made_the_default_at_once_leave_one_default(pg):
    """The later one cleared nothing (the other's flag was not written yet) and then
    failed on the one-default constraint: an error page for the admin. It waits its
    turn now, and stays the default."""
    from compute.services.clusters import cluster_register
    from tests.races import held_open, run_in_thread

    config = kubeconfig({"token": "abc"})
    for name in ("a", "b"):
        cluster_register(actor=None, name=name, kubeconfig=config)
    with held_open(
        lambda: cluster_register(actor=None, name="a", kubeconfig=config, default=True)
    ) as commit:
        second = run_in_thread(
            lambda: cluster_register(actor=None, name="b", kubeconfig=config, default=True)
        )
        commit()
    second["thread"].join(30)
    assert "error" not in second, second
    assert list(KubernetesCluster.objects.filter(default=True).values_list("name", flat=True)) == [
        "b"
    ]
