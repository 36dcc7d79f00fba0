#!/usr/bin/env bash
# Make sure the tools the test suite drives are installed: Chromium (headless) renders the
# results page in tests/e2e/test_results_page.py. Installed from Debian's packages when
# missing; exits non-zero, saying why, when it cannot be installed.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "test tools: chromium is missing and apt-get is not available; install Chromium by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "test tools: installing chromium needs root (or sudo)" >&2; exit 1; }
    SUDO="sudo -n"
fi
echo "test tools: installing chromium"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "test tools: chromium is still missing after apt-get" >&2; exit 1; }
