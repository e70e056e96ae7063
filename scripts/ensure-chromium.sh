#!/bin/sh
# Make sure Debian's chromium is installed for the inspector's browser test.
# Installs the `chromium` package with apt-get when /usr/bin/chromium is missing;
# never downloads a browser build of its own. LIVEREPLAY_CHROMIUM points at another.
set -eu

CHROMIUM="${LIVEREPLAY_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    echo "ensure-chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: $CHROMIUM is missing and apt-get is not available;" >&2
    echo "  install Chromium yourself, or set LIVEREPLAY_CHROMIUM" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "ensure-chromium: installing chromium with apt-get"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
"$CHROMIUM" --version
