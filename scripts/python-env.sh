#!/usr/bin/env bash
# scripts/python-env.sh - the Python virtualenv Weir's tests run Python clients in
# (tests/python/requirements.txt: Confluent's client and schema registry serializers),
# made on first use and kept under ~/.cache/weir. Prints the venv's python.
#
#   scripts/python-env.sh          (creates or updates the venv; prints its python's path)
#
# Environment:
#   WEIR_PYTHON_ENV   where the venv lives (default ${XDG_CACHE_HOME:-$HOME/.cache}/weir/python)
#   WEIR_PYTHON       the python that makes it (default python3)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUIREMENTS=$ROOT/tests/python/requirements.txt
VENV=${WEIR_PYTHON_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/python}
PYTHON=${WEIR_PYTHON:-python3}

mkdir -p "$(dirname "$VENV")"
exec 9>"$VENV.lock"; flock 9  # tests of several binaries may ask at once
if [[ ! -x $VENV/bin/python ]] || ! cmp -s "$REQUIREMENTS" "$VENV/requirements.txt"; then
  echo "python-env.sh: installing $REQUIREMENTS into $VENV" >&2
  if [[ ! -x $VENV/bin/python ]]; then
    "$PYTHON" -m venv "$VENV" >&2 || {
      # Debian's python3 lacks venv until python3-venv is installed.
      echo "python-env.sh: $PYTHON -m venv failed (on Debian: apt-get install python3-venv)" >&2; exit 1; }
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQUIREMENTS" >&2
  cp "$REQUIREMENTS" "$VENV/requirements.txt"
fi
echo "$VENV/bin/python"
