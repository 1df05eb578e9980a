#!/usr/bin/env bash
# scripts/services.sh start|stop|status redis|postgres NAME PORT
# Runs a private Redis or PostgreSQL for the portal under var/NAME (loopback only).
# Prints the URL to use on stdout. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cmd=$1 kind=$2 name=$3 port=$4
dir="$VAR/$name"
mkdir -p "$dir"

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

case "$kind:$cmd" in
  redis:start)
    if [ -f "$dir/redis.pid" ] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then :; else
      port_free "$port" || die "port $port is taken; choose another for Redis"
      redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
        --pidfile "$dir/redis.pid" --logfile "$VAR/log/$name.log" --save '' --appendonly no \
        >/dev/null
      wait_port "$port" 10 || die "Redis did not start (see $VAR/log/$name.log)"
    fi
    echo "redis://127.0.0.1:$port/0"
    ;;
  redis:stop)
    if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; rm -f "$dir/redis.pid"; fi
    ;;
  postgres:start)
    bin=$(pg_bin); [ -n "$bin" ] || die "PostgreSQL is not installed (apt-get install postgresql)"
    run=(); [ "$(id -u)" -eq 0 ] && run=(runuser -u postgres --)
    data="$dir/data"
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data" && { [ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$dir"; }
      "${run[@]}" "$bin/initdb" -D "$data" -U isotope --auth=trust -E UTF8 >"$VAR/log/$name-initdb.log" 2>&1 \
        || die "initdb failed (see $VAR/log/$name-initdb.log)"
    fi
    if ! "${run[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      port_free "$port" || die "port $port is taken; choose another for PostgreSQL"
      touch "$VAR/log/$name.log"; [ "$(id -u)" -ne 0 ] || chown postgres "$VAR/log/$name.log"
      "${run[@]}" "$bin/pg_ctl" -D "$data" -l "$VAR/log/$name.log" -w -t 30 \
        -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >/dev/null || die "PostgreSQL did not start (see $VAR/log/$name.log)"
    fi
    echo "postgres://isotope@127.0.0.1:$port/isotope"
    "$bin/psql" -h 127.0.0.1 -p "$port" -U isotope -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='isotope'" | grep -q 1 \
      || "$bin/createdb" -h 127.0.0.1 -p "$port" -U isotope isotope
    ;;
  postgres:stop)
    bin=$(pg_bin); run=(); [ "$(id -u)" -eq 0 ] && run=(runuser -u postgres --)
    [ -f "$dir/data/PG_VERSION" ] && "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    ;;
  *) die "usage: services.sh start|stop redis|postgres NAME PORT" ;;
esac
