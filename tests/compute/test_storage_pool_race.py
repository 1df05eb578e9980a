"""A fresh host's first VMs provision in parallel (a pool scaled to 10 on a new
machine): every task finds the storage pool missing and defines it. The ones that lose
the race use the pool the winner made instead of failing their VM with "pool already
exists"."""

from __future__ import annotations

import secrets
import threading

import pytest

from compute.backends import BackendError
from compute.backends.libvirt import LibvirtBackend, xml

pytestmark = pytest.mark.libvirt_test_driver


@pytest.fixture
def backend(tmp_path):
    backend = LibvirtBackend(uri="test:///default", storage_path=str(tmp_path / "vols"))
    made = []
    yield backend, made
    for name in made:
        pool = backend.conn.storagePoolLookupByName(name)
        if pool.isActive():
            pool.destroy()
        pool.undefine()


def test_a_pool_defined_by_another_task_meanwhile_is_used_not_a_failure(backend, tmp_path):
    backend, made = backend
    name = f"isorace{secrets.token_hex(3)}"
    pool_xml = xml.pool_xml(name, str(tmp_path / name))
    first = backend._pool_define("define pool", name, pool_xml)
    made.append(name)
    # The loser of the race: its lookup found nothing, the winner defined it since.
    again = backend._pool_define("define pool", name, pool_xml)
    assert again.UUIDString() == first.UUIDString()

    started = []

    def start():
        backend._pool_start("start pool", backend.conn.storagePoolLookupByName(name), 0)
        started.append(True)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert started == [True] * 8 and first.isActive()


def test_a_pool_definition_refused_for_another_reason_still_fails_in_plain_words(backend):
    backend, _made = backend
    with pytest.raises(BackendError) as refused:
        backend._pool_define("define pool", "isoracebad", "<pool type='nope'><name>x</name></pool>")
    assert "could not define pool" in str(refused.value).lower()
