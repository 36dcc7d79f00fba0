#!/usr/bin/env bash
# Make sure the tools the test suite drives are installed: Chromium (headless) renders the
# results page in tests/e2e/test_results_page.py, and nginx stands in front of gunicorn in
# tests/e2e/test_slow_clients.py. Installed from Debian's packages when missing; exits
# non-zero, saying why, when one cannot be installed (after trying the others).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/apt_install.sh
source scripts/apt_install.sh

have_chromium() { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }

ensure_chromium() {
    have_chromium && return 0
    apt_install "test tools" chromium || return 1
    have_chromium || { echo "test tools: chromium is still missing after apt-get" >&2; return 1; }
}

status=0
ensure_chromium || status=1
bash scripts/ensure_nginx.sh || status=1
exit "$status"
