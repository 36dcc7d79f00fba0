#!/usr/bin/env bash
# Make sure nginx, the buffering proxy `make run` puts in front of gunicorn, is installed:
# Debian's package, with apt-get, as root or through `sudo -n`. Only the binary is used:
# `make run` and the tests start their own nginx with a config rendered under their own
# directory (scripts/nginx_conf.py); exits non-zero, saying why, when it cannot be installed.
set -euo pipefail

have_nginx() { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; }

have_nginx && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "nginx: missing and apt-get is not available; install nginx (>= 1.19.5) by hand" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "nginx: installing it needs root (or sudo)" >&2; exit 1; }
    SUDO="sudo -n"
fi
echo "nginx: installing Debian's nginx"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
have_nginx || { echo "nginx: still missing after apt-get" >&2; exit 1; }
