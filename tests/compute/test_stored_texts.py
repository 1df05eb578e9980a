"""A VM's, a migration's and a host's stored messages read the same in English as before
and in Chinese to a Chinese reader, down to a backend's reason inside a migration's
failure (portal.texts over compute.texts.vms, .migrations and .hosts)."""

from __future__ import annotations

import pytest
from django.utils import translation

from compute.backends.libvirt.backend import CONSOLE_PORT_REASON
from compute.texts import hosts, migrations, vms
from portal import texts

pytestmark = pytest.mark.unit


def chinese(message: str) -> str:
    with translation.override("zh-hans"):
        return texts.localize(message)


def test_a_failed_migration_shows_the_hosts_reason_in_chinese_too():
    reason = hosts.CONSOLE_PORT_FAILED
    message = migrations.EVENT_FAILED % {"reason": reason}
    assert message == (
        "Live migration failed; the VM keeps running where it was: "
        "The host could not allocate a console port for this VM."
    )
    shown = chinese(message)
    assert "Live migration" not in shown and "console port" not in shown
    with translation.override("zh-hans"):
        assert translation.gettext(hosts.CONSOLE_PORT_FAILED) in shown


def test_a_task_that_gave_up_keeps_the_console_port_reason_readable():
    message = vms.GAVE_UP % {"reason": CONSOLE_PORT_REASON, "attempts": 5}
    assert message == (
        "The host could not allocate a console port for this VM (gave up after 5 attempts)."
    )
    shown = chinese(message)
    assert "5" in shown and "console port" not in shown and "gave up" not in shown


def test_an_abort_note_reads_its_timeout_in_chinese_with_the_numbers_kept():
    timeout = migrations.COMPLETION_TIMEOUT % {"seconds": f"{61.6:.0f}", "per_gib": 30}
    note = migrations.ABORTING % {"reason": timeout}
    assert note == (
        "Aborting — Completion timeout: not finished after 62 s (30 s per GiB of the guest)."
    )
    shown = chinese(note)
    assert "62" in shown and "30" in shown and "timeout" not in shown


def test_the_canceller_is_read_back_out_of_the_cancelling_reason():
    assert texts.parse(migrations.CANCELLING % {"actor": "alice"}) == (
        migrations.CANCELLING,
        {"actor": "alice"},
    )
    done = migrations.CANCELLED_BY_REQUEST % {"actor": "alice"}
    assert done == "Cancelled (requested by alice)."
    assert "alice" in chinese(done) and "Cancelled" not in chinese(done)


def test_every_action_and_phase_has_its_own_sentence():
    from compute.choices import Phase
    from compute.services.vms import ACTIONS

    assert {rule.verb for rule in ACTIONS.values()} == set(vms.REQUESTED_BY)
    assert set(Phase.values) == set(vms.VM_IS)
    assert vms.REQUESTED_BY["Stopping"] % {"actor": "bob"} == "Stopping requested by bob."
    assert chinese(vms.VM_IS["Stopped"]) != vms.VM_IS["Stopped"]


def test_a_phase_inside_a_reconciler_message_is_the_readers_word():
    message = vms.HOST_UNREACHABLE % {"host": "node1", "phase": "Running"}
    with translation.override("zh-hans"):
        running = translation.gettext("Running")
    shown = chinese(message)
    assert "node1" in shown and running in shown and "Running" not in shown
