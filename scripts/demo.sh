#!/usr/bin/env bash
# Quickstart 1: install (once) and run the demo. Extra arguments go to `lightning-viz demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${VENV:-.venv}/bin/lightning-viz" demo "$@"
