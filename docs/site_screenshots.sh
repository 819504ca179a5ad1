#!/usr/bin/env bash
# Screenshots of the built documentation site: its home page and one callback page,
#   docs/screenshots/site_home.png, docs/screenshots/site_callback.png
# Builds the site (mkdocs build --strict, from .venv-docs: see .ci/run), serves it on
# 127.0.0.1 and saves what headless Chromium shows. Not part of the tests. Usage:
#   bash docs/site_screenshots.sh
# Environment: MKDOCS (default .venv-docs/bin/mkdocs), WIDTH=1280 HEIGHT=1600, PORT=8765.
# Needs Chromium once (Debian/Ubuntu): apt-get update && apt-get install -y chromium
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
mkdocs=${MKDOCS:-.venv-docs/bin/mkdocs}
width=${WIDTH:-1280}
height=${HEIGHT:-1600}
port=${PORT:-8765}
browser=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[[ -n $browser ]] || { echo "Chromium missing: apt-get install -y chromium" >&2; exit 2; }
tmp=$(mktemp -d)
server=
cleanup() {
  if [[ -n $server ]]; then kill "$server" 2> /dev/null || true; wait "$server" 2> /dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
NO_MKDOCS_2_WARNING=1 "$mkdocs" build --strict --quiet --site-dir "$tmp/site"
python3 -m http.server "$port" --bind 127.0.0.1 --directory "$tmp/site" > /dev/null 2>&1 &
server=$!
sleep 2
shot() {  # shot NAME PATH
  local file=$root/docs/screenshots/$1.png
  timeout 300 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --user-data-dir="$tmp/chromium" --window-size="$width,$height" \
    --virtual-time-budget=10000 --screenshot="$file" "http://127.0.0.1:$port/$2" \
    > "$tmp/chromium-$1.log" 2>&1 || true
  if [[ -s $file ]]; then echo "$file"; else cat "$tmp/chromium-$1.log" >&2; exit 1; fi
}
shot site_home ""
shot site_callback "callbacks/adversarial/"
