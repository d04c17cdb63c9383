# Shared by scripts/serve and scripts/test: a project venv kept in step with pyproject.toml.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_install() {  # apt_install PKG...: install the Debian packages that are missing
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "commhub: installing Debian packages: ${missing[*]}" >&2
  if ! { as_root apt-get update -q && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q "${missing[@]}"; }; then
    echo "commhub: please install these Debian packages as root: ${missing[*]}" >&2
    exit 1
  fi
}

find_python() {
  for py in python3.11 python3.12 python3.13 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$py"; return 0
    fi
  done
  echo "commhub: Python >= 3.11 is required" >&2; exit 1
}

ensure_venv() {  # ensure_venv EXTRAS: create .venv and (re)install when pyproject.toml changed
  local extras="$1" py stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    py="$(find_python)"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      apt_install python3-venv   # Debian ships venv separately
      "$py" -m venv "$VENV"
    fi
  fi
  stamp="$VENV/.commhub-installed"
  want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)-$extras"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "commhub: installing the package and its dependencies into .venv (first run takes a few minutes)" >&2
    "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/pip" install --disable-pip-version-check --progress-bar on -q -e "$ROOT$extras"
    echo "$want" > "$stamp"
  fi
}
