# Shared shell helpers for Isotope's scripts. Source it; do not run it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="${ISOTOPE_VAR:-$ROOT/var}"
VENV="$ROOT/.venv"
mkdir -p "$VAR/log"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
warn() { printf '\033[1;33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# env_flag NAME: true when the variable NAME says yes. Unset, empty, 0, false, no and off
# (any case, surrounding spaces ignored) say no; anything else says yes. The same rule as
# tools.infra.env_flag in Python: read CI and ISOTOPE_REQUIRE_INFRA only through these.
env_flag() {
  local value="${!1:-}"
  value="${value#"${value%%[![:space:]]*}"}"
  value="${value%"${value##*[![:space:]]}"}"
  case "${value,,}" in
    "" | 0 | false | no | off) return 1 ;;
    *) return 0 ;;
  esac
}

# infra_required: missing infrastructure must fail (CI, or ISOTOPE_REQUIRE_INFRA says yes).
infra_required() { env_flag CI || env_flag ISOTOPE_REQUIRE_INFRA; }

# apt_ensure PKG...: install the Debian packages that are missing (root), else say how.
apt_ensure() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    die "missing Debian packages; run: sudo apt-get install -y ${missing[*]}"
  fi
  say "installing Debian packages: ${missing[*]}"
  if [ ! -f "$VAR/.apt-updated" ] || [ -n "$(find "$VAR/.apt-updated" -mmin +1440 2>/dev/null)" ]; then
    apt-get update -q >"$VAR/log/apt.log" 2>&1 || warn "apt-get update failed (see $VAR/log/apt.log)"
    touch "$VAR/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" \
    >>"$VAR/log/apt.log" 2>&1 || die "apt-get install failed (see $VAR/log/apt.log)"
}

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_port PORT SECONDS: wait until something listens.
wait_port() {
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    port_free "$1" || return 0
    sleep 0.1
  done
  return 1
}
