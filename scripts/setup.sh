#!/usr/bin/env bash
# Creates or updates the project venv with the package (editable) and its dev extra.
# Idempotent: does nothing when the venv already matches pyproject.toml (and the constraints).
#   VENV=.venv           the venv to create or update
#   PYTHON=python3       the interpreter that creates it
#   EXTRAS=dev           the extras to install (dev: pytest, ruff, build and the reference
#                        libraries the tests compare with)
#   CONSTRAINTS=FILE     pip constraints for this venv (e.g. constraints/oldest.txt); they
#                        replace any constraint file in your pip configuration
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
want=$( (cat pyproject.toml ${CONSTRAINTS:+"$CONSTRAINTS"}; echo "$EXTRAS") | sha256sum | cut -d' ' -f1)
have=$(cat "$VENV/.lightning-viz-installed" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  if [ -n "${CONSTRAINTS:-}" ]; then
    export PIP_CONSTRAINT="$PWD/$CONSTRAINTS"
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$EXTRAS]"
  echo "$want" > "$VENV/.lightning-viz-installed"
fi
