#!/bin/sh
# The JavaScript reader's tests (Node's test runner) against real daemons started
# from the project's .venv (`make install` first). No npm packages are needed.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATH="$ROOT/.venv/bin:$PATH"
export PATH
"$ROOT/scripts/ensure-node.sh"
export LIVEREPLAY_PYTHON="${LIVEREPLAY_PYTHON:-$ROOT/.venv/bin/python}"
cd "$ROOT/client/js"
npm test
