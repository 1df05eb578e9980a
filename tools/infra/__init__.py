"""Local infrastructure for development, demos and tests.

Stdlib-only so that it runs before the virtualenv exists. Each part is a module with the
same small contract:

- ``up() -> dict``      start it (idempotent), return its status
- ``down() -> None``    stop what ``up`` started (idempotent)
- ``status() -> dict``  ``{"ok": bool, "reason": str, ...details}``

Every part writes its status as JSON to ``var/infra/<part>.json`` so that ``make run``,
the test suite and the portal can tell what this machine provides without probing again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("ISOTOPE_VAR", ROOT / "var"))
STATE = VAR / "infra"
CACHE = Path(os.environ.get("ISOTOPE_CACHE", Path.home() / ".cache" / "isotope"))

# How a yes/no environment variable is read, here and in scripts/lib.sh (``env_flag``):
# unset, empty or one of these words (any case, spaces ignored) is "no", anything else
# "yes" — an unexpected value errs on the strict side.
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` says yes (see ``FALSE_WORDS``)."""
    return os.environ.get(name, "").strip().lower() not in FALSE_WORDS


def in_ci() -> bool:
    """``CI`` says yes: the whole suite runs and every tier must pass (``.ci/run``)."""
    return env_flag("CI")


def infra_required() -> bool:
    """Missing infrastructure fails instead of skipping: in CI, or when
    ``ISOTOPE_REQUIRE_INFRA`` says yes. The one place tests, tools and scripts ask."""
    return in_ci() or env_flag("ISOTOPE_REQUIRE_INFRA")


def write_state(part: str, data: dict) -> dict:
    """Record a part's status for other processes (tests, make run) to read."""
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / f"{part}.json").write_text(json.dumps(data, indent=2, sort_keys=True))
    return data


def read_state(part: str) -> dict:
    """The last recorded status of a part, or ``{"ok": False}`` when it never ran."""
    try:
        return json.loads((STATE / f"{part}.json").read_text())
    except (OSError, ValueError):
        return {"ok": False, "reason": f"{part} was never started (run: make infra-up)"}
