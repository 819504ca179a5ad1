#!/usr/bin/env bash
# Creates or updates the project venv with the package (editable) and its dev extra.
# Idempotent: does nothing when the venv already matches pyproject.toml (and the constraints).
#   VENV=.venv           the venv to create or update
#   PYTHON=python3       the interpreter that creates it
#   EXTRAS=dev,oracles   the extras to install (dev: pytest, ruff, build and the reference
#                        libraries the tests compare with; oracles: the test-only oracles
#                        imagecorruptions, quantus, scikit-image, and mlflow and wandb)
#   CONSTRAINTS=FILE     pip constraints for this venv (e.g. constraints/oldest.txt); they
#                        replace any constraint file in your pip configuration
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-dev,oracles}
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
  # One pip call per extra: torchattacks (dev) pins requests~=2.25.1 while mlflow (oracles)
  # needs requests>=2.28, so one resolution of both backtracks for tens of minutes. The
  # later call upgrades requests; torchattacks works with it (pip says so, and goes on).
  for extra in ${EXTRAS//,/ }; do
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extra]"
  done
  echo "$want" > "$VENV/.lightning-viz-installed"
fi
