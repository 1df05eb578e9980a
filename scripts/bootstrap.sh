#!/usr/bin/env bash
# Install what the portal needs to run and be tested: Debian packages (when root),
# the virtualenv with pinned Python dependencies, and the npm front-end libraries.
# Idempotent and cached: each step is skipped when its inputs have not changed.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

apt_ensure redis-server postgresql libvirt-dev pkg-config gcc qemu-utils
command -v npm >/dev/null || apt_ensure nodejs npm
if [ "${1:-}" = "--test" ]; then
  apt_ensure chromium fonts-dejavu-core nginx-light  # nginx: tests of deploy/nginx
fi

PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating the virtualenv in .venv"
  "$PY" -m venv "$VENV"
fi
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
stamp="$VENV/.isotope-requirements.sha"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "installing Python dependencies"
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip wheel
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi
say "front-end libraries"
scripts/assets.sh
