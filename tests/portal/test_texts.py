"""Stored messages (events, status messages, reasons) are written in English and shown to
each reader in their language (portal.texts): every format is well formed and translated,
a message reads back to its format and arguments, nested messages and phase words are
translated too, and no service writes a message that is not made from a format."""

from __future__ import annotations

import ast
import pathlib

import pytest
from django.utils import translation

from portal import texts

pytestmark = pytest.mark.unit

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ("compute", "monitoring", "tenants", "usage", "portal")
# Keyword arguments that become a stored message.
MESSAGE_KEYWORDS = {"message", "event_message", "ready_message"}


def test_every_format_has_only_named_placeholders_and_words_of_its_own():
    problems = {msgid: texts.format_problems(msgid) for msgid in texts.formats()}
    assert {m: p for m, p in problems.items() if p} == {}


def test_every_format_is_translated_to_chinese():
    with translation.override("zh-hans"):
        missing = [m for m in texts.formats() if translation.gettext(m) == m]
    assert missing == []


def test_every_chinese_format_keeps_the_placeholders_of_its_english_one():
    with translation.override("zh-hans"):
        wrong = [
            m
            for m in texts.formats()
            if sorted(texts.PLACEHOLDER.findall(translation.gettext(m)))
            != sorted(texts.PLACEHOLDER.findall(m))
        ]
    assert wrong == []


def test_a_message_reads_back_to_its_format_and_arguments():
    from compute.texts import vms

    message = vms.ACCEPTED % {"vcpus": 2, "memory_mib": 512, "image": "debian-12"}
    assert texts.parse(message) == (
        vms.ACCEPTED,
        {"vcpus": "2", "memory_mib": "512", "image": "debian-12"},
    )
    assert texts.parse("The hypervisor said no.") is None


def test_a_chinese_reader_sees_the_translation_with_phase_words_translated():
    from compute.texts import common

    message = common.PHASE_IS_NOW % {"phase": "Running"}
    with translation.override("zh-hans"):
        shown = texts.localize(message)
        running = translation.gettext("Running")
    assert "Running" not in shown and running in shown
    with translation.override("en"):
        assert texts.localize(message) == message  # English readers: as stored


def test_engine_words_and_empty_messages_are_shown_as_written():
    with translation.override("zh-hans"):
        assert texts.localize("qemu-system-x86_64: -vnc: Failed to find an available port") == (
            "qemu-system-x86_64: -vnc: Failed to find an available port"
        )
        assert texts.localize("") == ""
        assert texts.localize(None) == ""


def test_a_live_message_is_localized_in_a_copy():
    from compute.texts import common

    body = {
        "type": "resource",
        "stream": "tenant.acme",
        "seq": 3,
        "data": {
            "kind": "vm",
            "name": "web",
            "state": {"message": common.PHASE_IS_NOW % {"phase": "Stopped"}},
        },
    }
    with translation.override("zh-hans"):
        shown = texts.localize_live(body)
    assert shown["data"]["state"]["message"] != body["data"]["state"]["message"]
    assert body["data"]["state"]["message"] == "Phase is now Stopped."


def _literal_messages() -> list[str]:
    """Calls that pass an English literal (or an f-string) as a stored message."""
    found = []

    def literal(node) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str) and bool(node.value)
        if isinstance(node, ast.JoinedStr):
            return True
        if isinstance(node, ast.IfExp):
            return literal(node.body) or literal(node.orelse)
        if isinstance(node, ast.BoolOp):
            return any(literal(v) for v in node.values)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return literal(node.left) or literal(node.right)
        return False

    for source in SOURCES:
        for path in sorted((ROOT / source).rglob("*.py")):
            if "migrations" in path.parts or "texts" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                for keyword in node.keywords:
                    if keyword.arg in MESSAGE_KEYWORDS and literal(keyword.value):
                        found.append(where)
                    # An event's reason is one CamelCase word; a reason with spaces (a
                    # migration's) is a sentence someone reads.
                    if keyword.arg == "reason" and (
                        isinstance(keyword.value, ast.JoinedStr)
                        or (literal(keyword.value) and " " in ast.unparse(keyword.value))
                    ):
                        found.append(f"{where} (reason)")
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name.endswith(("_observe", "_fail")) or name == "_finish":
                    if any(literal(arg) for arg in node.args[1:]):
                        found.append(f"{where} ({name})")
    return found


def test_no_service_writes_a_stored_message_that_no_format_made():
    assert _literal_messages() == []


def test_the_reading_that_explains_most_of_a_nested_message_wins():
    """A message that nests another matches several formats; the one read wins whose words
    and whose arguments' own formats explain the most of it."""
    from compute.backends.libvirt.backend import CONSOLE_PORT_REASON
    from compute.texts import hosts, vms

    message = vms.GAVE_UP % {"reason": CONSOLE_PORT_REASON, "attempts": 5}
    # "The host could not %(action)s." matches too, with the rest as its action.
    assert hosts.COULD_NOT.split("%")[0] in message
    assert texts.parse(message) == (vms.GAVE_UP, {"reason": CONSOLE_PORT_REASON, "attempts": "5"})
    assert texts.parse(vms.VM_IS["Paused"]) == (vms.VM_IS["Paused"], {})
