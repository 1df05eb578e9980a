#!/usr/bin/env bash
# make run: set up everything this machine can run and start the portal on
# http://0.0.0.0:8000 (SQLite by default). Ctrl-C stops what it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

scripts/bootstrap.sh

REDIS_PORT=${ISOTOPE_REDIS_PORT:-6379}
if [ -z "${REDIS_URL:-}" ]; then
  if ! port_free "$REDIS_PORT" && [ ! -f "$VAR/redis/redis.pid" ]; then REDIS_PORT=6380; fi
  REDIS_URL=$(scripts/services.sh start redis redis "$REDIS_PORT" | tail -1)
fi
export REDIS_URL
export ISOTOPE_DEBUG=${ISOTOPE_DEBUG:-1}
cleanup() { say "stopping"; scripts/services.sh stop redis redis "$REDIS_PORT" || true; }
trap cleanup EXIT

say "local infrastructure (libvirt, guest image, Kubernetes) — best effort"
python3 -m tools.infra up || warn "some infrastructure is missing; the portal will say what"

"$VENV/bin/python" manage.py migrate --noinput >/dev/null
# Seed the demo tenants and users when the database has no users yet.
if [ "$("$VENV/bin/python" manage.py shell --no-imports -c 'from django.contrib.auth.models import User; print(User.objects.exists())' | tail -1)" = "False" ]; then
  password=${ISOTOPE_DEMO_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(9))')}
  "$VENV/bin/python" manage.py seed_demo --password "$password" > "$VAR/demo-logins.txt"
else
  # Hosts, images and flavors follow what this machine runs today.
  "$VENV/bin/python" manage.py shell --no-imports -c 'from compute.services.seed import seed_local_infrastructure as s; print("\n".join(s()))'
fi
[ "$ISOTOPE_DEBUG" = 1 ] || "$VENV/bin/python" manage.py collectstatic --noinput >/dev/null

say "Isotope is starting on http://127.0.0.1:${PORT:-8000}/  (admin: /admin/, API: /api/v1/docs/)"
[ -f "$VAR/demo-logins.txt" ] && cat "$VAR/demo-logins.txt"
export PORT=${PORT:-8000}
"$VENV/bin/honcho" -f Procfile start
