#!/usr/bin/env bash
# make test: install and start everything the suite needs (PostgreSQL, Redis, Chromium,
# libvirt nodes, the tiny guest image, the OIDC provider, the Kubernetes control plane), lint, run pytest
# with every tier, and stop what it started. Extra arguments go to pytest.
#
# Strictness (read through env_flag/infra_required in lib.sh, as tools.infra reads it in
# Python): with CI (.ci/run sets it) or ISOTOPE_REQUIRE_INFRA, infrastructure that does
# not come up stops the run, and a test that would skip fails; with CI, a tier with no
# passing test fails the run too (tests/strict.py).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

scripts/bootstrap.sh --test

# Lint first: a minute of ruff saves half an hour of tests on code that cannot merge.
say "linting"
scripts/lint.sh

PG_PORT=${ISOTOPE_TEST_PG_PORT:-54329}
REDIS_PORT=${ISOTOPE_TEST_REDIS_PORT:-63799}
cleanup() {
  local rc=$?
  say "stopping test services"
  scripts/services.sh stop redis redistest "$REDIS_PORT" || true
  scripts/services.sh stop postgres pgtest "$PG_PORT" || true
  if [ -z "${ISOTOPE_KEEP_INFRA:-}" ]; then python3 -m tools.infra down >/dev/null 2>&1 || true; fi
  exit $rc
}
trap cleanup EXIT

say "starting PostgreSQL and Redis for the tests"
DATABASE_URL=$(scripts/services.sh start postgres pgtest "$PG_PORT" | tail -1)
REDIS_URL=$(scripts/services.sh start redis redistest "$REDIS_PORT" | tail -1)
export DATABASE_URL REDIS_URL

say "starting local infrastructure (libvirt nodes, guest image, OIDC provider, Kubernetes)"
if ! python3 -m tools.infra up --strict; then
  warn "some infrastructure did not come up; trying once more"
  if ! python3 -m tools.infra up --strict; then
    if infra_required; then
      die "infrastructure missing (the NOT OK parts above) and CI / ISOTOPE_REQUIRE_INFRA requires every tier"
    fi
    warn "some infrastructure is missing; its tests will skip and say why"
  fi
fi

if infra_required; then export ISOTOPE_REQUIRE_INFRA=1; fi
export ISOTOPE_DEBUG=1 PYTHONDONTWRITEBYTECODE=1

# pytest-xdist workers (tests/parallel.py): each has its own test database and Redis
# database; the shared-infrastructure tiers (qemu, migration, kubernetes, oidc, and tests
# that sign in through the OIDC provider) run on one of them, every other test, browser
# tests included, spreads. Default: one per core, at most 4; 0 (or a single core) = one
# process, no xdist (README "make test").
CORES=$(nproc 2>/dev/null || echo 1)
DEFAULT_WORKERS=$((CORES > 4 ? 4 : CORES))
if [ "$DEFAULT_WORKERS" -lt 2 ]; then DEFAULT_WORKERS=0; fi
WORKERS=${ISOTOPE_TEST_WORKERS:-$DEFAULT_WORKERS}
XDIST=()
if [ "$WORKERS" != 0 ]; then XDIST=(-n "$WORKERS" --dist loadgroup); fi

say "running the test suite${XDIST:+ on $WORKERS workers}"
# The 30 slowest tests are named at the end: a run that takes longer says where.
"$VENV/bin/python" -m pytest "${XDIST[@]}" --durations=30 "$@"
