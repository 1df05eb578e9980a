"""Label maps (a VM's or workload's ``labels``, a VM's ``nodeSelector``) in Kubernetes
label syntax, with limits, so that what the portal accepts a cluster accepts too.

A key is ``[prefix/]name``: the optional prefix a DNS subdomain of at most 253
characters, the name at most 63 characters of letters, digits, ``-``, ``_`` and ``.``
that starts and ends with a letter or digit. A value is empty or such a name. Patterns
are matched with ``fullmatch``: ``$`` would also accept a trailing newline.
"""

from __future__ import annotations

import re

MAX_LABELS = 64
MAX_NAME = 63
MAX_PREFIX = 253
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_NAME_RULE = (
    "at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)


def _key_error(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > MAX_PREFIX or not _SUBDOMAIN.fullmatch(prefix)):
        return (
            f"Invalid key {key!r}: the prefix before '/' must be a DNS subdomain "
            "(lowercase, e.g. example.com)."
        )
    if len(name) > MAX_NAME or not _NAME.fullmatch(name):
        return f"Invalid key {key!r}: use {_NAME_RULE}, with an optional DNS prefix and '/'."
    return None


def label_map_errors(value: object) -> list[str]:
    """What is wrong with ``value`` as a label map (empty when it is fine)."""
    if value is None:
        return []
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return ["A map of strings."]
    if len(value) > MAX_LABELS:
        return [f"At most {MAX_LABELS} entries."]
    for key, item in value.items():
        error = _key_error(key)
        if error:
            return [error]
        if item and (len(item) > MAX_NAME or not _NAME.fullmatch(item)):
            return [f"Invalid value for {key!r}: empty, or {_NAME_RULE}."]
    return []


def label_key_error(key: str) -> str | None:
    """What is wrong with ``key`` as a label key (None when it is fine)."""
    return _key_error(key)


def labels_text(labels: dict) -> str:
    """A label map as one line: ``app=web, tier=front`` (sorted by key)."""
    return ", ".join(f"{key}={value}" for key, value in sorted(labels.items()))


def labels_changed_message(labels: dict, actor: str) -> str:
    """The event a user's relabel leaves on the VM's or workload's timeline."""
    from compute.texts import common

    if not labels:
        return common.LABELS_REMOVED % {"actor": actor}
    return common.LABELS_CHANGED % {"labels": labels_text(labels), "actor": actor}
