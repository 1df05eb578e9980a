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
