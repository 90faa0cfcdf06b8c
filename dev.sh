#!/usr/bin/env bash
# One-step set-up and run. Usage:
#   bash dev.sh demo [args]   set up .venv (once) and run the main job (popstore demo)
#   bash dev.sh test [args]   set up .venv (once) and run the test suite (pytest args pass through)
#   bash dev.sh setup         only set up
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${POPSTORE_VENV:-.venv}
STAMP="$VENV/.popstore-installed-$(cat pyproject.toml setup-requirements.txt | cksum | cut -d' ' -f1)"

if [ ! -f "$STAMP" ]; then
  echo "== setting up $VENV (first run only)"
  # UDUNITS-2 for the CF unit checks (cfunits, cfchecker); optional: those tests are skipped without it
  if ! ldconfig -p 2>/dev/null | grep -q libudunits2 && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    { apt-get update -q && apt-get install -y -q libudunits2-dev; } >/dev/null 2>&1 \
      || echo "== libudunits2 not installed: the CF checks through UDUNITS will be skipped"
  fi
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned: a CPU build is served locally; a loose requirement with no torch pulls GBs of CUDA wheels
  "$VENV/bin/python" -m pip install -q -r setup-requirements.txt
  "$VENV/bin/python" -m pip install -q -e ".[test]"
  rm -f "$VENV"/.popstore-installed-*
  touch "$STAMP"
fi

cmd=${1:-}
shift || true
case "$cmd" in
  demo)  exec "$VENV/bin/popstore" demo "$@" ;;
  test)  exec "$VENV/bin/python" -m pytest "$@" ;;
  setup) ;;
  *) echo "usage: bash dev.sh {demo|test|setup} [args]" >&2; exit 2 ;;
esac
