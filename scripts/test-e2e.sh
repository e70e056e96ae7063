#!/bin/sh
# The inspector in a real headless Chromium: installs Debian's chromium when it is
# missing and playwright-core from package-lock.json (no browser download), then
# runs client/js/e2e against a daemon from the project's .venv. The screenshot
# goes to artifacts/inspector.png.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATH="$ROOT/.venv/bin:$PATH"
export PATH
"$ROOT/scripts/ensure-node.sh"
"$ROOT/scripts/ensure-chromium.sh"
export LIVEREPLAY_PYTHON="${LIVEREPLAY_PYTHON:-$ROOT/.venv/bin/python}"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
cd "$ROOT/client/js"
npm ci --no-audit --no-fund --loglevel=error
npm run test:e2e
echo "screenshot: $ROOT/artifacts/inspector.png"
