#!/usr/bin/env bash
# make lint (and the first step of make test): ruff's lint rules and its formatter check.
# Both always run so one report shows every problem, with a check that no tracked file
# holds a merge's conflict markers; the exit status is non-zero when any found
# something. Fix formatting with `make format`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

[ -x "$VENV/bin/ruff" ] || die "ruff is not installed in $VENV (run: make bootstrap)"
failed=()
"$VENV/bin/ruff" check . || failed+=("ruff check")
"$VENV/bin/ruff" format --check . || failed+=("ruff format --check")
# Lines a merge leaves around a conflict (a tracked file, text or translation catalogue).
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 &&
  git -C "$ROOT" grep -n -I -E '^(<<<<<<<|>>>>>>>)( |$)' -- . ':!node_modules'; then
  failed+=("conflict markers")
fi
if [ ${#failed[@]} -gt 0 ]; then
  printf -v which '%s, ' "${failed[@]}"
  die "lint failed: ${which%, } reported problems (above); \`make format\` fixes formatting"
fi
say "lint clean (ruff check, ruff format --check, no conflict markers)"
