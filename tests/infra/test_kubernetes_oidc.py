"""One identity for the portal and the cluster: an ID token from the local OIDC provider
(Ory Hydra) is accepted by a kube-apiserver configured with ``--oidc-*`` flags
(``tools.infra.oidc.apiserver_flags``, which ``tools.infra.k8s`` passes to the shared
API server at its next start).

The shared API server is not restarted for this: the test starts a private
kube-apiserver of the same build on a free port, against the same etcd under its own
``--etcd-prefix`` (deleted afterwards), configured for a client of its own.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from tests.conftest import require
from tools.infra import k8s
from tools.infra import oidc as provider

pytestmark = [pytest.mark.kubernetes, pytest.mark.oidc]

REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the flow stops at it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _etcd(path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://{k8s.HOST}:{k8s.ETCD_PORT}{path}", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def oidc_client():
    state = provider.status()
    require(bool(state.get("ok")), f"OIDC provider not up: {state.get('reason')}")
    client_id = f"kubernetes-test-{secrets.token_hex(4)}"
    client = provider.client_create(client_id, redirect_uris=[REDIRECT], name="kubectl (tests)")
    return client


@pytest.fixture(scope="module")
def private_apiserver(oidc_client, tmp_path_factory):
    """A kube-apiserver of our own that trusts the provider for ``oidc_client``."""
    cluster = k8s.status()
    require(bool(cluster.get("ok")), f"local Kubernetes is not ready: {cluster.get('reason')}")
    port = _free_port()
    prefix = f"/isotope-oidc-test-{secrets.token_hex(4)}"
    argv = [
        arg
        for arg in k8s._command("kube-apiserver", Path(cluster["build"]["bin"]))
        if not arg.startswith(("--secure-port=", "--oidc-"))
    ]
    argv += [f"--secure-port={port}", f"--etcd-prefix={prefix}"]
    argv += provider.apiserver_flags(oidc_client["client_id"])
    log = tmp_path_factory.mktemp("apiserver") / "kube-apiserver.log"
    with log.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    server = f"https://{k8s.HOST}:{port}"
    context = ssl.create_default_context(cafile=str(k8s.PKI / "ca.crt"))
    context.load_cert_chain(str(k8s.PKI / "admin.crt"), str(k8s.PKI / "admin.key"))
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{server}/readyz", context=context, timeout=3) as r:
                    if r.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            assert time.monotonic() < deadline, "private kube-apiserver not ready in 180 s"
            time.sleep(1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        # Its objects live under its own prefix in the shared etcd: remove them.
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        _etcd("/v3/kv/deleterange", {"key": _b64(prefix), "range_end": _b64(end)})


def id_token_for(client: dict, username: str, password: str) -> str:
    """The authorisation code flow as kubectl's OIDC helpers run it, through the
    provider's real pages; returns the ID token."""
    browser = requests.Session()
    browser.verify = str(provider.PKI / "ca.crt")
    browser.trust_env = False  # or REQUESTS_CA_BUNDLE would replace that CA
    query = urlencode(
        {
            "client_id": client["client_id"],
            "response_type": "code",
            "scope": "openid profile email groups",
            "redirect_uri": REDIRECT,
            "state": secrets.token_urlsafe(12),
            "nonce": secrets.token_urlsafe(12),
        }
    )
    form = browser.get(f"{provider.ISSUER}/oauth2/auth?{query}")
    challenge = re.search(r'name="challenge" value="([^"]+)"', form.text).group(1)
    answer = browser.post(
        urljoin(form.url, "/login"),
        data={"challenge": challenge, "username": username, "password": password},
        allow_redirects=False,
    )
    while not answer.headers["Location"].startswith(REDIRECT):
        answer = browser.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False)
    code = parse_qs(urlsplit(answer.headers["Location"]).query)["code"][0]
    tokens = browser.post(
        f"{provider.ISSUER}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    ).json()
    return tokens["id_token"]


def who_am_i(server: str, token: str) -> requests.Response:
    return requests.post(
        f"{server}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        headers={"Authorization": f"Bearer {token}"},
        verify=str(k8s.PKI / "ca.crt"),
        timeout=10,
    )


def test_an_id_token_from_the_provider_is_accepted_by_the_api_server(
    oidc_client, private_apiserver
):
    name, password = f"kube-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    provider.user_set(name, password, groups=["acme-operators", "cluster-viewers"])
    token = id_token_for(oidc_client, name, password)

    answer = who_am_i(private_apiserver, token)

    assert answer.status_code == 201, answer.text
    user = answer.json()["status"]["userInfo"]
    assert user["username"] == f"oidc:{name}"
    assert {"oidc:acme-operators", "oidc:cluster-viewers", "system:authenticated"} <= set(
        user["groups"]
    )
    # RBAC applies to that identity like to any other: nothing is granted to it yet.
    pods = requests.get(
        f"{private_apiserver}/api/v1/namespaces/default/pods",
        headers={"Authorization": f"Bearer {token}"},
        verify=str(k8s.PKI / "ca.crt"),
        timeout=10,
    )
    assert pods.status_code == 403 and f"oidc:{name}" in pods.json()["message"]


def test_a_token_for_another_audience_or_altered_is_rejected(oidc_client, private_apiserver):
    name, password = f"kube-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
    provider.user_set(name, password, groups=["acme-operators"])
    other = provider.client_create(
        oidc_client["client_id"] + "-other", redirect_uris=[REDIRECT], name="another app"
    )
    assert who_am_i(private_apiserver, id_token_for(other, name, password)).status_code == 401
    token = id_token_for(oidc_client, name, password)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["groups"] = ["system:masters"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert who_am_i(private_apiserver, f"{header}.{forged}.{signature}").status_code == 401
