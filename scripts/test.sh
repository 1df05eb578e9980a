#!/usr/bin/env bash
# make test: install and start everything the suite needs (PostgreSQL, Redis, Chromium,
# libvirt nodes, the tiny guest image, the Kubernetes control plane), run pytest with
# every tier, and stop what it started. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

scripts/bootstrap.sh --test

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

say "starting local infrastructure (libvirt nodes, guest image, Kubernetes)"
if ! python3 -m tools.infra up --strict; then
  warn "some infrastructure did not come up; trying once more"
  python3 -m tools.infra up || warn "some infrastructure is missing; its tests will say why"
fi

# In CI every tier must run: a tier that cannot start its infrastructure fails.
if [ -n "${CI:-}" ]; then export ISOTOPE_REQUIRE_INFRA=1; fi
export ISOTOPE_DEBUG=1 PYTHONDONTWRITEBYTECODE=1

say "linting"
"$VENV/bin/ruff" check . && "$VENV/bin/ruff" format --check .

say "running the test suite"
"$VENV/bin/python" -m pytest "$@"
