"""Compute fixtures: an isolated libvirt test-driver host per test, images, flavors."""

from __future__ import annotations

import pytest

from compute.choices import ImageKind
from compute.models import Flavor, Host, Image
from compute.services.hosts import host_check

NODE_XML = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores><threads>1</threads>
    <active>{cpus}</active><mhz>2000</mhz><model>i686</model></cpu>
  <memory>{memory_kib}</memory>
  <pool type='dir'><name>default-pool</name>
    <uuid>35bb2ad9-388a-cdfe-461a-b8907f6e53fe</uuid>
    <target><path>/default-pool</path></target></pool>
</node>
"""


@pytest.fixture
def make_host(tmp_path):
    """``make_host(name, cpus=8, memory_mib=16384)``: a Host on its own test-driver
    instance (``test:///<file>``), checked so that it is reachable."""

    def make(name: str = "test1", *, cpus: int = 8, memory_mib: int = 16384, **fields) -> Host:
        path = tmp_path / f"{name}.xml"
        path.write_text(NODE_XML.format(cpus=cpus, memory_kib=memory_mib * 1024))
        host = Host.objects.create(name=name, uri=f"test://{path}", **fields)
        return host_check(host)

    return make


@pytest.fixture
def tiny_image(db):
    return Image.objects.create(
        name="tiny",
        display_name="Tiny guest",
        kind=ImageKind.KERNEL,
        kernel_path="/var/lib/isotope/images/test/vmlinux",
        initrd_path="/var/lib/isotope/images/test/initrd.img",
        min_memory_mib=128,
    )


@pytest.fixture
def flavors(db):
    return {
        name: Flavor.objects.create(name=name, vcpus=v, memory_mib=m, disk_gib=d)
        for name, v, m, d in [("tiny", 1, 256, 0), ("small", 1, 512, 1), ("medium", 2, 1024, 10)]
    }


@pytest.fixture
def fake_cluster(db):
    """A default Kubernetes cluster nobody reaches (its kubeconfig lists none): for tests
    of what the portal accepts, not of what the cluster does."""
    from compute.models import KubernetesCluster
    from monitoring import crypto

    return KubernetesCluster.objects.create(
        name="fake",
        server="https://127.0.0.1:1",
        kubeconfig_encrypted=crypto.encrypt("clusters: []", context=crypto.KUBECONFIG),
        default=True,
    )


@pytest.fixture
def pg(db):
    """The database, which must be PostgreSQL (row locks and concurrency as in production)."""
    from tests.conftest import postgres_only

    postgres_only()


@pytest.fixture
def migrate_to(transactional_db):
    """For a data-migration test: an empty database of its own, which the test migrates
    with ``migrate_to([(app, migration), ...])`` (the historical models' apps returned)
    to the migration before the data migration, fills, and migrates on. The worker's
    test database keeps its schema: migrating that one back and forth cost 45 s a test,
    Django rebuilding model states over every migration, and every later test on the
    worker depended on the last step putting it all back."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from tests.conftest import postgres_only

    postgres_only()
    # The connection is pointed elsewhere for the test (the whole process shares its
    # settings): a connection pool would keep handing out the test database's.
    assert "pool" not in connection.settings_dict["OPTIONS"], "migrate_to needs no DB pool"
    test_database = connection.settings_dict["NAME"]
    scratch = f"{test_database}_migrations"
    quoted = connection.ops.quote_name(scratch)
    with connection.cursor() as cursor:  # autocommit: a transactional test
        cursor.execute(f"DROP DATABASE IF EXISTS {quoted}")
        cursor.execute(f"CREATE DATABASE {quoted}")
    connection.close()
    connection.settings_dict["NAME"] = scratch

    def migrate(targets):
        executor = MigrationExecutor(connection)
        executor.migrate(targets)
        return executor.loader.project_state(targets).apps

    try:
        yield migrate
    finally:
        connection.close()
        connection.settings_dict["NAME"] = test_database
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {quoted} WITH (FORCE)")
