#!/bin/sh
# Regenerate both locks after changing dependencies in pyproject.toml:
#   requirements.lock        the dev lock for `make install` (pip freeze, no hashes)
#   deploy/requirements.txt  the image lock: the server and redis extras plus the
#                            build backend, with hashes (pip install --require-hashes)
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
"$SCRATCH/dev/bin/pip" install -q '.[dev]'
"$SCRATCH/dev/bin/pip" freeze --exclude livereplay > requirements.lock

"$PYTHON" -m venv "$SCRATCH/tools"
"$SCRATCH/tools/bin/pip" install -q 'pip-tools==7.6.2'
env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
    PIP_CONFIG_FILE=/dev/null \
    "$SCRATCH/tools/bin/pip-compile" -q --generate-hashes --allow-unsafe \
    --extra server --extra redis --build-deps-for wheel \
    --no-strip-extras --no-emit-index-url --no-emit-find-links \
    -c requirements.lock -o deploy/requirements.txt pyproject.toml
echo "lock: wrote requirements.lock and deploy/requirements.txt"
