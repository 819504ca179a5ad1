#!/usr/bin/env bash
# The built package works without the source tree: builds the sdist and the wheel
# (`python -m build`: the wheel is built from the sdist, so the sdist is complete too),
# installs the wheel (not editable) into a new venv, and from an empty directory runs
# `lightning-viz demo --fast` and imports every public name.
#   PYTHON=python3     the interpreter of the new venv
#   BUILD_PYTHON=.venv/bin/python   a Python with `build` (the dev extra has it)
#   KEEP=1             keep the temporary directory (its path is printed)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
BUILD_PY=${BUILD_PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
cleanup() { if [[ ${KEEP:-0} == 1 ]]; then echo "kept $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT

"$BUILD_PY" -m build --outdir "$tmp/dist" . > "$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
ls "$tmp/dist"
wheel=$(ls "$tmp"/dist/*.whl)
# the sdist holds what the README links to and what runs the tests (MANIFEST.in)
listing=$(tar -tzf "$tmp"/dist/*.tar.gz)
for f in CHANGELOG.md docs/index.md examples/own_module.py tests/conftest.py \
  tests/callbacks/__init__.py scripts/test.sh constraints .ci/run; do
  grep -q "^[^/]*/$f" <<< "$listing" || { echo "the sdist lacks $f"; exit 1; }
done
if grep -E "/(lightning_logs|\.pytest_cache|\.ruff_cache|__pycache__)/" <<< "$listing"; then
  echo "the sdist holds run outputs of the working tree (above)"; exit 1
fi
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel" 2>&1 \
  | grep -v "^WARNING: Location" || true
"$tmp/venv/bin/python" -m pip show -f lightning-viz | grep -E "^(Version|Location):"

mkdir "$tmp/elsewhere"
cd "$tmp/elsewhere"   # no source tree here: only the installed wheel can be imported
"$tmp/venv/bin/python" - "$wheel" <<'PY'
import importlib
import importlib.metadata
import pathlib
import sys

import lightning_viz

where = pathlib.Path(lightning_viz.__file__).resolve()
assert "site-packages" in where.parts, f"lightning_viz imported from {where}, not the wheel"
assert lightning_viz.__version__ == importlib.metadata.version("lightning-viz"), (
    lightning_viz.__version__, importlib.metadata.version("lightning-viz"))
assert (where.parent / "py.typed").is_file(), "py.typed is missing from the wheel"
dist = importlib.metadata.distribution("lightning-viz")
licenses = [f for f in dist.files if f.name == "LICENSE"]
assert licenses and "Apache License" in licenses[0].read_text(), "LICENSE is missing"
python = "Programming Language :: Python :: %d.%d" % sys.version_info[:2]
assert python in dist.metadata.get_all("Classifier"), f"no classifier {python!r}"
names = 0
for module_name in ("lightning_viz", "lightning_viz.functional", "lightning_viz.callbacks",
                    "lightning_viz.data"):
    module = importlib.import_module(module_name)
    for name in module.__all__:
        getattr(module, name)  # raises when a public name cannot be imported
        names += 1
print(f"lightning_viz {lightning_viz.__version__} from {where.parent}: "
      f"{names} public names imported, py.typed present")
PY
"$tmp/venv/bin/lightning-viz" demo --fast --epochs 1 --train-size 200 --val-size 100 \
  --output-dir logs > demo.log 2>&1 || { tail -n 40 demo.log; exit 1; }
tail -n 3 demo.log
ls logs/demo_shapes_small/version_0/events.out.tfevents.* > /dev/null
echo "wheel check passed: $(basename "$wheel")"
