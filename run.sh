#!/usr/bin/env bash
# One entry point that sets itself up: creates (or reuses) the cached virtual
# environment for this dependency spec, then runs circhat or the test suite.
#   ./run.sh demo        the chat assistant on the built-in demo catalog
#   ./run.sh test        the whole test suite (lint + pytest)
#   ./run.sh bench       the composed-retrieval benchmark (python -m benchmarks.cir), writes BENCHMARKS.md
#   ./run.sh ARGS...     any `circhat` subcommand, e.g. ./run.sh world build
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${CIRCHAT_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/circhat/venvs}"

find_python() {
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "circhat needs Python >= 3.11 (python3.11 not found)" >&2; exit 1
}

ensure_venv() {
  local python spec key
  python="$(find_python)"
  spec="$("$python" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"
  key="$(cat "$repo/requirements.lock" | sha256sum | cut -c1-16)"
  venv="$cache/$spec-$key"
  if [ -f "$venv/.complete" ]; then return 0; fi
  mkdir -p "$cache"
  exec 9>"$cache/.lock-$spec-$key"
  flock 9
  if [ ! -f "$venv/.complete" ]; then
    echo "circhat: creating the virtual environment $venv (first run only, ~2 min)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --progress-bar on --upgrade pip >&2
    "$venv/bin/python" -m pip install --progress-bar on -r "$repo/requirements.lock" >&2
    touch "$venv/.complete"
  fi
  flock -u 9
}

ensure_chromium() {
  if command -v chromium >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "circhat: installing Debian's chromium for the browser tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2; }
  else
    echo "circhat: chromium not found; browser tests will be skipped (apt-get install chromium)" >&2
  fi
}

ensure_venv
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
export GRADIO_ANALYTICS_ENABLED=False
export HF_HUB_OFFLINE=1
cd "$repo"
case "${1:-demo}" in
  test)
    shift
    ensure_chromium
    "$venv/bin/ruff" check .
    exec "$venv/bin/python" -m pytest "$@"
    ;;
  bench)
    shift
    exec "$venv/bin/python" -m benchmarks.cir "$@"
    ;;
  *)
    exec "$venv/bin/python" -m ui.cli "$@"
    ;;
esac
