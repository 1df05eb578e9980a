"""A deployment installs requirements.txt alone (deploy/container/Containerfile, the
systemd layout): everything the web tier and the workers import must come from it, not
from a package only the test tools happen to bring (requirements-dev.txt)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit

# What the processes deploy/ starts load (the web tier's application, a worker's Celery app
# with every task module, the broker's and the channel layer's transports), with every
# module of a distribution requirements.txt does not install made unimportable first, as
# if it were not there: an optional import copes, a needed one fails.
LOADED = """
import importlib.abc, json, sys

HIDDEN = set(json.loads(sys.argv[1]))

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
import django
django.setup()
import portal.asgi
from portal.celery import app
app.loader.import_default_modules()
app.connection_for_write().transport
from channels.layers import get_channel_layer
get_channel_layer()
print("loaded")
"""


def _name(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def runtime_closure() -> set[str]:
    """The distributions requirements.txt installs: its lines, their extras, and what
    each depends on, recursively (from the installed packages' metadata)."""
    wanted: list[tuple[str, frozenset[str]]] = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            wanted.append((requirement.name, frozenset(requirement.extras)))
    seen: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        name, extras = wanted.pop()
        if (_name(name), extras) in seen:
            continue
        seen.add((_name(name), extras))
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(
                marker.evaluate({"extra": extra}) for extra in (extras or {""})
            ):
                wanted.append((requirement.name, frozenset(requirement.extras)))
    return {name for name, _ in seen}


def test_the_web_tier_and_the_workers_load_with_requirements_txt_alone():
    closure = runtime_closure()
    hidden = sorted(
        module
        for module, owners in metadata.packages_distributions().items()
        if not any(_name(owner) in closure for owner in owners)
    )
    assert "pytest" in hidden  # what the tests themselves need is hidden too
    result = subprocess.run(
        [sys.executable, "-c", LOADED, json.dumps(hidden)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"},
    )
    assert result.returncode == 0, (
        "a module requirements.txt does not install is needed at run time "
        "(add its distribution, or the extra that brings it):\n" + result.stderr[-2000:]
    )
    assert result.stdout.strip().splitlines()[-1] == "loaded"
