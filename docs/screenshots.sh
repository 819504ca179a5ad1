#!/usr/bin/env bash
# Screenshots of what a person sees in TensorBoard for the demo.
#
# Runs `lightning-viz demo` (default settings) into a temporary log dir, serves it
# with a real TensorBoard on 127.0.0.1 and saves what headless Chromium shows of the
# Images, Scalars, Custom Scalars, Text and Projector tabs:
#
#   docs/screenshots/{images,scalars,custom_scalars,text,projector}.png
#
# Usage, from anywhere in the repository (not part of the test suite):
#
#   bash docs/screenshots.sh                   # the demo's defaults (about a minute on 2 cores)
#   bash docs/screenshots.sh --epochs 4 --fast # extra arguments go to `lightning-viz demo`
#
# Environment:
#   VENV=.venv            the virtualenv with lightning-viz's dependencies (scripts/demo.sh
#                         makes it); the code shown is this checkout's (PYTHONPATH)
#   OUT=docs/screenshots  where the PNGs go
#   LOGDIR=               an existing log dir to show instead of running the demo
#   IMAGE_TAGS=...        regex of the image tags on the Images tab
#                         (default: activations|saliency/vanilla|robustness/examples)
#   WIDTH=1400 HEIGHT=1800 the browser window (the projector's is WIDTH x WIDTH*5/7);
#   BUDGET_MS=20000       virtual time per page (three times that for the projector)
#   KEEP_LOGS=1           keep the temporary log dir (its path is printed)
#
# Needs Chromium once (Debian/Ubuntu): apt-get update && apt-get install -y chromium
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${VENV:-$root/.venv}
out=${OUT:-$root/docs/screenshots}
width=${WIDTH:-1400}
height=${HEIGHT:-1800}
budget=${BUDGET_MS:-20000}
image_tags=${IMAGE_TAGS:-activations|saliency/vanilla|robustness/examples}
py=$venv/bin/python
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}

[[ -x $py ]] || { echo "no Python at $py: run scripts/demo.sh once, or set VENV" >&2; exit 2; }
[[ -n $browser ]] || {
  echo "Chromium missing: apt-get update && apt-get install -y chromium" >&2
  exit 2
}
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"
out=$(cd "$out" && pwd)

tb=
logs=${LOGDIR:-}
tmp=$(mktemp -d)
cleanup() {
  if [[ -n $tb ]]; then kill "$tb" 2>/dev/null || true; wait "$tb" 2>/dev/null || true; fi
  if [[ ${KEEP_LOGS:-0} == 1 ]]; then echo "logs kept in $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

if [[ -z $logs ]]; then
  logs=$tmp/logs
  echo "== lightning-viz demo --output-dir $logs $*"
  "$py" -m lightning_viz.cli demo --output-dir "$logs" "$@"
fi

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
echo "== tensorboard --logdir $logs on $url"
"$py" -m tensorboard.main --logdir "$logs" --host 127.0.0.1 --port "$port" --load_fast false \
  >"$tmp/tensorboard.log" 2>&1 &
tb=$!
# wait until TensorBoard answers and has read images (event files load in the background)
for _ in $(seq 120); do
  tags=$(curl -sf "$url/data/plugin/images/tags" 2>/dev/null || true)
  if [[ -n $tags && $tags != "{}" ]]; then break; fi
  kill -0 "$tb" 2>/dev/null || { cat "$tmp/tensorboard.log" >&2; exit 1; }
  sleep 1
done
sleep 3

# the tag filter travels in the URL hash of the Polymer dashboards (Images, Custom Scalars, Text)
filter=$("$py" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$image_tags")
shoot() { # name, URL hash, virtual-time budget in ms, window height
  local file=$out/$1.png
  rm -f "$file"
  timeout 300 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$tmp/chromium" --window-size="$width,$4" \
    --virtual-time-budget="$3" --screenshot="$file" "$url/$2" >"$tmp/chromium-$1.log" 2>&1 || true
  if [[ -s $file ]]; then echo "$file"; else echo "no screenshot of $1 (see $tmp/chromium-$1.log)" >&2; fi
}
shoot images "#images&tagFilter=$filter" "$budget" "$height"
shoot scalars "#scalars" "$budget" "$height"
shoot custom_scalars "#custom_scalars" "$budget" "$height"
shoot text "#text" "$budget" "$height"
# the projector's 3-D view fills the window: a landscape one frames the point cloud
shoot projector "#projector" "$((budget * 3))" "$((width * 5 / 7))"  # loads, then runs PCA
