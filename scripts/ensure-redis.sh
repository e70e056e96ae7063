#!/bin/sh
# Make sure redis-server (>= 6.2) is installed for the Redis backend's tests.
# Installs Debian/Ubuntu's redis-server package when it is missing; does nothing
# when it is there or when LIVEREPLAY_TEST_REDIS_URL points at a Redis already.
set -eu

if [ -n "${LIVEREPLAY_TEST_REDIS_URL:-}" ]; then
    echo "ensure-redis: using LIVEREPLAY_TEST_REDIS_URL, nothing to install"
    exit 0
fi
if command -v redis-server >/dev/null 2>&1; then
    echo "ensure-redis: $(redis-server --version | cut -d' ' -f1-3)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-redis: redis-server is missing and apt-get is not available;" >&2
    echo "  install Redis >= 6.2 yourself, or set LIVEREPLAY_TEST_REDIS_URL" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "ensure-redis: installing redis-server with apt-get"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends redis-server
# The tests start their own servers on free ports; the packaged service is not needed.
redis-server --version
