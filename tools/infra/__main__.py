"""``python3 -m tools.infra [PART] up|down|status``.

PART is one of ``libvirt``, ``image``, ``oidc``, ``k8s``; without it the command applies to all of
them in dependency order (down in reverse). ``up``/``status`` exit non-zero when a part
is not ok with ``--strict``, which is the default in CI or with ISOTOPE_REQUIRE_INFRA
(``tools.infra.infra_required``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from tools.infra import ROOT, infra_required

PARTS = ("libvirt", "image", "oidc", "k8s")


def _in_venv() -> None:
    """Run under the project's virtualenv once ``make bootstrap`` has made it: the parts
    stay stdlib-only, but the KVM probe and the smoke tests define the domain XML the
    product itself writes (``compute.backends.libvirt.xml``), which needs Django."""
    venv = ROOT / ".venv"
    python = venv / "bin" / "python"
    if python.exists() and os.path.realpath(sys.prefix) != os.path.realpath(venv):
        os.execv(str(python), [str(python), "-m", "tools.infra", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.infra")
    parser.add_argument("part", nargs="?", choices=PARTS, help="one part (default: all)")
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument(
        "--strict",
        action="store_true",
        default=infra_required(),
        help="exit non-zero when a part is not ok (default in CI / ISOTOPE_REQUIRE_INFRA)",
    )
    args = parser.parse_args(argv)
    parts = [args.part] if args.part else list(PARTS)
    if args.command == "down":
        parts.reverse()
    failed = False
    for part in parts:
        module = importlib.import_module(f"tools.infra.{part}")
        result = getattr(module, args.command)()
        if args.command != "down":
            ok = bool(result.get("ok"))
            failed |= not ok
            mark = "ok " if ok else "NOT OK"
            print(f"[{mark}] {part}: {result.get('reason', '')}", flush=True)
            if not ok or "-v" in sys.argv:
                print(json.dumps(result, indent=2, sort_keys=True), flush=True)
    return 1 if (failed and args.strict) else 0


if __name__ == "__main__":
    _in_venv()
    sys.exit(main())
