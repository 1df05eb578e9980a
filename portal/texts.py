"""Messages Isotope keeps as data, shown to each reader in their own language.

An event's message, a resource's status message and a failure's reason are written once
(by a worker, with no reader in sight) and read many times: on pages in English or
Chinese, on the live stream, in the API, by webhooks. They are stored in English, as the
API and webhooks carry them, and translated when shown.

Each such message is made from a *format*: a module-level constant of an installed
app's ``texts`` module or of a module in its ``texts`` package (``compute.texts.vms``,
...), marked with ``gettext_noop`` so that
``makemessages`` collects it, with ``%(name)s`` placeholders only::

    PHASE_IS_NOW = gettext_noop("Phase is now %(phase)s.")
    message = texts.PHASE_IS_NOW % {"phase": phase}

``localize(message)`` finds the format a stored message was made from, reads its
arguments back out of it, and renders the format's translation in the active language
with each argument localized in turn (a failure's reason inside "Live migration failed:
%(reason)s" is a stored message of its own). An app's module may name a translator for a
placeholder (``ARGUMENTS = {"phase": ...}``: a phase word is shown as the reader's word).
A message made from no format (an engine's own words) is shown as it was written.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from django.apps import apps
from django.utils import translation

PLACEHOLDER = re.compile(r"%\((?P<name>[a-z_][a-z0-9_]*)\)s")
# Any other conversion (``%(x)d``, ``%(x).1f``, a bare ``%s``) could not be read back out
# of the English text; callers format numbers themselves.
OTHER_CONVERSION = re.compile(r"%(?!\([a-z_][a-z0-9_]*\)s)(?!%)")
DEPTH = 3  # arguments that are messages themselves, to this depth


@dataclass(frozen=True)
class Format:
    msgid: str
    pattern: re.Pattern
    literal: int  # characters outside placeholders: the more, the more specific


def _modules():
    """Every installed app's ``texts`` module, and the modules of a ``texts`` package."""
    for app in apps.get_app_configs():
        name = f"{app.name}.texts"
        if importlib.util.find_spec(name) is None:
            continue
        module = importlib.import_module(name)
        yield module
        if hasattr(module, "__path__"):
            for info in pkgutil.iter_modules(module.__path__, prefix=f"{name}."):
                yield importlib.import_module(info.name)


def _pattern(msgid: str) -> re.Pattern:
    parts, seen, at = [], set(), 0
    for match in PLACEHOLDER.finditer(msgid):
        parts.append(re.escape(msgid[at : match.start()].replace("%%", "%")))
        name = match["name"]
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
        seen.add(name)
        at = match.end()
    parts.append(re.escape(msgid[at:].replace("%%", "%")))
    return re.compile("".join(parts), re.DOTALL)


def format_problems(msgid: str) -> list[str]:
    """Why ``msgid`` cannot be a format of a stored message (empty when it can)."""
    problems = []
    if OTHER_CONVERSION.search(msgid.replace("%%", "")):
        problems.append("only %(name)s placeholders")
    if not PLACEHOLDER.sub("", msgid).strip(" .:;,"):
        problems.append("some words besides its placeholders")
    if re.search(r"\)s%\(", msgid):
        problems.append("no two placeholders side by side")
    return problems


@lru_cache(maxsize=1)
def catalog() -> tuple[dict[str, str], tuple[Format, ...], dict[str, Callable[[str], str]]]:
    """(messages without placeholders, formats with them by specificity, argument
    translators) of every app's ``texts`` module."""
    plain: dict[str, str] = {}
    formats: list[Format] = []
    arguments: dict[str, Callable[[str], str]] = {}
    for module in _modules():
        arguments.update(getattr(module, "ARGUMENTS", {}))
        for name, value in vars(module).items():
            if not name.isupper() or not isinstance(value, str) or name == "ARGUMENTS":
                continue
            if PLACEHOLDER.search(value):
                literal = len(PLACEHOLDER.sub("", value))
                formats.append(Format(value, _pattern(value), literal))
            else:
                plain[value] = value
    # A message's first words belong to its outermost format: formats that begin with
    # words go first (a format that begins with a placeholder is most often one nested
    # at the end of another), then the more literal characters, the sooner.
    formats.sort(key=lambda f: (f.msgid.startswith("%("), -f.literal))
    return plain, tuple(formats), arguments


def formats() -> list[str]:
    """Every format's msgid (for tests and tools)."""
    plain, found, _ = catalog()
    return [*plain, *(f.msgid for f in found)]


def parse(message: str) -> tuple[str, dict[str, str]] | None:
    """The format ``message`` was made from and its arguments, or None.

    Several formats may match one message when messages nest ("Restore from backup b1
    failed: vda.qcow2 is corrupt …" matches both the restore's format and, read from the
    end, the corrupt file's). The reading that explains the most of the message wins: a
    format's own words plus those its arguments' own formats explain, to ``DEPTH``.
    """
    best = _reading(message, DEPTH)
    return None if best is None else (best[1], best[2])


def _reading(message: str, depth: int) -> tuple[int, str, dict[str, str]] | None:
    """(characters explained, msgid, arguments) of the best reading of ``message``."""
    plain, found, _ = catalog()
    if message in plain:
        return len(message), message, {}
    best = None
    for fmt in found:
        match = fmt.pattern.fullmatch(message)
        if not match:
            continue
        args = match.groupdict()
        score = fmt.literal
        if depth > 0:
            for value in args.values():
                inner = _reading(value, depth - 1)
                score += inner[0] if inner else 0
        if best is None or score > best[0]:
            best = (score, fmt.msgid, args)
    return best


def localize(message, depth: int = DEPTH) -> str:
    """``message`` in the active language (as written when no format made it, or when
    the active language is the one it was written in)."""
    if not message or not isinstance(message, str):
        return message or ""
    language = translation.get_language() or "en"
    if language.split("-")[0] == "en":
        return message
    return _localized(language, message, depth)


# The same message reaches many readers (a state pushed to every socket of a tenant, a
# page of events that repeat): read back once per language.
@lru_cache(maxsize=4096)
def _localized(language: str, message: str, depth: int) -> str:
    found = parse(message)
    if found is None:
        return message
    msgid, args = found
    translated = translation.gettext(msgid)
    if not args:
        return translated
    _, _, arguments = catalog()
    shown = {}
    for name, value in args.items():
        if name in arguments:
            shown[name] = arguments[name](value)
        elif depth > 0:
            shown[name] = localize(value, depth - 1)
        else:
            shown[name] = value
    try:
        return translated % shown
    except (KeyError, ValueError, TypeError):  # a broken translation: the English stands
        return message


def localize_live(body: dict) -> dict:
    """A live-stream message (event or resource state) with its stored messages in the
    active language: a copy; the original is shared by every subscriber."""
    data = body.get("data")
    if not isinstance(data, dict):
        return body
    changed = dict(data)
    if isinstance(data.get("message"), str):
        changed["message"] = localize(data["message"])
    state = data.get("state")
    if isinstance(state, dict):
        state = dict(state)
        for key in ("message", "reason", "rolloutMessage"):
            if isinstance(state.get(key), str):
                state[key] = localize(state[key])
        for key in ("conditions", "decisions"):
            if isinstance(state.get(key), list):
                state[key] = [
                    {**c, "message": localize(c["message"])}
                    if isinstance(c, dict) and isinstance(c.get("message"), str)
                    else c
                    for c in state[key]
                ]
        changed["state"] = state
    notification = data.get("notification")
    if isinstance(notification, dict):
        changed["notification"] = {
            **notification,
            **{
                key: localize(notification[key])
                for key in ("message", "title")
                if isinstance(notification.get(key), str)
            },
        }
    # Unchanged (nothing in it is a stored message): the very same body, so a sender may
    # keep what it encoded for everyone.
    return body if changed == data else {**body, "data": changed}


def localize_snapshot(data: dict) -> dict:
    """A resync's data (events and resource states, or notifications) with its stored
    messages in the active language: a copy."""
    if not isinstance(data, dict):
        return data
    changed = dict(data)
    if isinstance(data.get("events"), list):
        changed["events"] = [localize_live({"data": e})["data"] for e in data["events"]]
    if isinstance(data.get("resources"), list):
        changed["resources"] = [
            {**r, "data": localize_live({"data": {"state": r["data"]}})["data"]["state"]}
            if isinstance(r, dict) and isinstance(r.get("data"), dict)
            else r
            for r in data["resources"]
        ]
    if isinstance(data.get("notifications"), list):
        changed["notifications"] = [
            localize_live({"data": {"notification": n}})["data"]["notification"]
            for n in data["notifications"]
        ]
    return changed
