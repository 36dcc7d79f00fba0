#!/usr/bin/env bash
# Make sure the tools the test suite drives are installed: Chromium (headless) renders the
# results page in tests/e2e/test_results_page.py, and nginx stands in front of gunicorn in
# tests/e2e/test_slow_clients.py. Installed from Debian's packages when missing; exits
# non-zero, saying why, when one cannot be installed (after trying the others).
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_chromium() {
    if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test tools: chromium is missing and apt-get is not available; install Chromium by hand" >&2
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "test tools: installing chromium needs root (or sudo)" >&2; return 1; }
        sudo="sudo -n"
    fi
    echo "test tools: installing chromium"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
    command -v chromium >/dev/null 2>&1 || { echo "test tools: chromium is still missing after apt-get" >&2; return 1; }
}

status=0
ensure_chromium || status=1
bash scripts/ensure_nginx.sh || status=1
exit "$status"
