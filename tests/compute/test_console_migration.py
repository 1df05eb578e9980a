"""The console follows a VM that live-migrates (qemu + migration tiers): the open session
ends with "moved, reconnect" and a fresh ticket reaches the guest on its new host."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from compute.choices import MigrationPhase
from compute.models import VirtualMachine
from compute.services import migrations as migration_services
from tests.compute.test_console_proxy import (
    Rfb,
    closed_with,
    session_cookie,
    socket,
    ticket_for,
)
from tests.compute.test_migration_qemu import boot, finished, nodes, policy, worker  # noqa: F401
from tests.monitoring.test_consumer import run

pytestmark = [pytest.mark.qemu, pytest.mark.migration, pytest.mark.django_db(transaction=True)]

RECONNECT_CODES = {4502, 4503}


def test_a_console_session_reconnects_to_the_guest_on_its_new_host(demo, nodes, worker):  # noqa: F811
    (vm,) = boot(demo)
    cookie, session_key = session_cookie(demo.bob)
    policy(bandwidth_mib=64)

    async def scenario():
        first = socket(cookie, await sync_to_async(ticket_for)(demo.bob, vm, session_key))
        connected, _ = await first.connect(timeout=10)
        assert connected
        version, _ = await Rfb(first).handshake()
        assert version == b"RFB 003.008\n"

        migration = await sync_to_async(migration_services.migration_request)(
            actor=demo.alice, vm=vm
        )
        done = await sync_to_async(finished)(migration, 120)
        assert done.phase == MigrationPhase.SUCCEEDED, done.reason
        # The old VNC server is gone: the proxy says so with a reconnect code.
        assert await closed_with(first, 30) in RECONNECT_CODES

        moved = await sync_to_async(VirtualMachine.objects.select_related("host", "tenant").get)(
            pk=vm.pk
        )
        assert moved.host_id == nodes["node2"].pk
        second = socket(cookie, await sync_to_async(ticket_for)(demo.bob, moved, session_key))
        connected, _ = await second.connect(timeout=10)
        assert connected
        version, name = await Rfb(second).handshake()
        assert version == b"RFB 003.008\n"
        assert vm.domain_name in name  # QEMU names the desktop after the domain
        await second.disconnect()

    run(scenario)
