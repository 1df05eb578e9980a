"""Reading a pasted manifest (YAML or JSON) for "Create from YAML".

The text becomes the same dict a client would POST to the API, or a ``ValidationError``
whose message says where and why the text is not one. PyYAML's ``safe_load`` rules
apply (plain data only), with two more: anchors and aliases are refused (a few lines of
them can expand into a huge document), and every mapping key must be text.
"""

from __future__ import annotations

import json

import yaml
from django.utils.translation import gettext

from portal.exceptions import ValidationError

# Far above any real VM or workload spec, far below what could hurt the server.
MAX_BYTES = 64 * 1024
FIELD = "manifest"


class _NoAliasLoader(yaml.SafeLoader):
    """``SafeLoader`` that stops at the first alias (``*name``)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem=gettext("anchors and aliases (*name) are not accepted"),
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)


def _refuse(message: str, detail: str | None = None) -> ValidationError:
    return ValidationError(message, errors={FIELD: [detail or message]})


def _where(line: int, column: int, problem: str) -> str:
    return gettext("Line %(line)s, column %(column)s: %(problem)s") % {
        "line": line,
        "column": column,
        "problem": problem,
    }


def _text_keys(value, path: str = "") -> None:
    """Refuse mappings with keys that are not text (``1: x``, ``true: y``) anywhere."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if not isinstance(key, str):
                raise _refuse(
                    gettext("The manifest is not valid."),
                    gettext("Keys must be text: %(key)s (under %(path)s) is not.")
                    % {"key": repr(key), "path": path or "/"},
                )
            _text_keys(inner, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _text_keys(inner, f"{path}.{index}")


def manifest_parse(text: str) -> dict:
    """The mapping ``text`` holds (JSON when it starts with ``{``, else YAML).

    Raises ``ValidationError`` (field ``manifest``) for an empty or oversized text, a
    syntax error (with its line and column, counted from 1), several documents, a
    document that is not a mapping, aliases or keys that are not text.
    """
    invalid = gettext("The manifest is not valid.")
    if len(text.encode()) > MAX_BYTES:
        raise _refuse(
            invalid,
            gettext("At most %(max)s KiB; this is %(size)s KiB.")
            % {"max": MAX_BYTES // 1024, "size": -(-len(text.encode()) // 1024)},
        )
    if not text.strip():
        raise _refuse(invalid, gettext("Paste a manifest: a YAML or JSON mapping."))
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise _refuse(invalid, _where(error.lineno, error.colno, error.msg)) from None
    else:
        try:
            data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            problem = error.problem or error.context or str(error)
            if error.context and problem.startswith("but "):  # "expected one document, but …"
                problem = f"{error.context}, {problem}"
            if mark is None:
                raise _refuse(invalid, problem) from None
            raise _refuse(invalid, _where(mark.line + 1, mark.column + 1, problem)) from None
        except yaml.YAMLError as error:
            raise _refuse(invalid, str(error)) from None
    if not isinstance(data, dict):
        raise _refuse(
            invalid,
            gettext("The manifest must be a mapping (metadata: …, spec: …), not %(kind)s.")
            % {"kind": _kind(data)},
        )
    _text_keys(data)
    return data


def _kind(value) -> str:
    if value is None:
        return gettext("an empty document")
    if isinstance(value, list):
        return gettext("a list")
    return gettext("a single value")
