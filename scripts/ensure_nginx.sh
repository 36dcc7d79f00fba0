#!/usr/bin/env bash
# Make sure nginx, the buffering proxy `make run` puts in front of gunicorn, is installed:
# Debian's package, with apt-get, as root or through `sudo -n`. Only the binary is used:
# `make run` and the tests start their own nginx with a config rendered under their own
# directory (scripts/nginx_conf.py); exits non-zero, saying why, when it cannot be installed.
set -euo pipefail

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }

have_nginx && exit 0
# shellcheck source=scripts/apt_install.sh
source "$(dirname "$0")/apt_install.sh"
apt_install nginx nginx
have_nginx || { echo "nginx: still missing after apt-get" >&2; exit 1; }
