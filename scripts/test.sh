#!/usr/bin/env bash
# Quickstart 2: install (once) and run the test suite and the docstring examples (slow tests
# excluded; add -m slow for them). Extra arguments go to pytest. VENV, PYTHON, EXTRAS and
# CONSTRAINTS as in scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VENV:-.venv}/bin/python" -m pytest -q "$@"
