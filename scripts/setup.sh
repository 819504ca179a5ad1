#!/usr/bin/env bash
# Creates or updates the project venv (.venv) with the package and its dev extra.
# Idempotent: does nothing when .venv already matches pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat .venv/.lightning-viz-installed 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" > .venv/.lightning-viz-installed
fi
