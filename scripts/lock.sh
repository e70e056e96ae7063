#!/bin/sh
# Regenerate both locks after changing dependencies in a pyproject.toml (the workspace's
# dev group, client/ or server/):
#   requirements.lock        the dev lock for `make install` (pip freeze, no hashes)
#   deploy/requirements.txt  the image lock: both distributions' dependencies, the
#                            redis extra and the build backend, with hashes
#                            (pip install --require-hashes)
# The image lock is constrained by the dev lock, so the image runs the versions
# the tests ran. It is resolved against the default public index with this
# machine's pip configuration ignored (as inside `docker build`), so its hashes
# are the published files' hashes, not those of a local mirror.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/livereplay-lock.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT

"$PYTHON" -m venv "$SCRATCH/dev"
"$SCRATCH/dev/bin/pip" install -q --upgrade pip
"$SCRATCH/dev/bin/pip" install -q ./client './server[redis]' --group dev
"$SCRATCH/dev/bin/pip" freeze --exclude livereplay --exclude livereplay-server > requirements.lock

# The image installs both distributions from this tree: lock what they need (the
# client's pin in the server's dependencies is this tree, so it is left out).
"$PYTHON" - > "$SCRATCH/image.in" <<'PY'
import tomllib
client = tomllib.load(open("client/pyproject.toml", "rb"))
server = tomllib.load(open("server/pyproject.toml", "rb"))
wanted = [*client["project"]["dependencies"], *server["project"]["dependencies"]]
wanted += server["project"]["optional-dependencies"]["redis"]
wanted += server["build-system"]["requires"]
print("\n".join(w for w in wanted if not w.startswith("livereplay")))
PY
"$PYTHON" -m venv "$SCRATCH/tools"
"$SCRATCH/tools/bin/pip" install -q 'pip-tools==7.6.2'
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
    PIP_CONFIG_FILE=/dev/null \
    "$SCRATCH/tools/bin/pip-compile" -q --generate-hashes --allow-unsafe \
    --no-strip-extras --no-emit-index-url --no-emit-find-links \
    -c requirements.lock -o deploy/requirements.txt "$SCRATCH/image.in"
echo "lock: wrote requirements.lock and deploy/requirements.txt"
