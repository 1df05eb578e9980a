#!/usr/bin/env bash
# Install the npm front-end libraries (from package-lock.json) and copy the files the
# portal serves into static/vendor/. Skips npm when the lock file has not changed.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=node_modules/.isotope-lock.sha
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
out=static/vendor
rm -rf "$out.tmp" && mkdir -p "$out.tmp"/{bootstrap,bootstrap-icons,chartjs,tus}
cp node_modules/bootstrap/dist/css/bootstrap.min.css* "$out.tmp/bootstrap/"
cp node_modules/bootstrap/dist/js/bootstrap.bundle.min.js* "$out.tmp/bootstrap/"
cp node_modules/bootstrap-icons/font/bootstrap-icons.min.css "$out.tmp/bootstrap-icons/"
cp -r node_modules/bootstrap-icons/font/fonts "$out.tmp/bootstrap-icons/"
# With their source maps: collectstatic (hashed names, DEBUG off) follows sourceMappingURL.
cp node_modules/chart.js/dist/chart.umd.min.js* "$out.tmp/chartjs/"
cp node_modules/tus-js-client/dist/tus.min.js* "$out.tmp/tus/"
if [ -d node_modules/@novnc/novnc/core ]; then
  mkdir -p "$out.tmp/novnc"
  cp -r node_modules/@novnc/novnc/core "$out.tmp/novnc/"
  [ -d node_modules/@novnc/novnc/vendor ] && cp -r node_modules/@novnc/novnc/vendor "$out.tmp/novnc/"
fi
rm -rf "$out" && mv "$out.tmp" "$out"
