#!/usr/bin/env bash
# Graceful reload of the running gateway: gunicorn starts new workers, which read the
# edited api.env and load the models it names, while the old workers finish their requests.
# nginx's config is rendered again from api.env and nginx reloads it the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD"
settings=$(.venv/bin/python -m ml_api.cli shell-env)
eval "$settings"
pidfile="$GUNICORN_PIDFILE"
[[ "$pidfile" = /* ]] || pidfile="$PWD/$pidfile"
[ -f "$pidfile" ] || { echo "reload: no gunicorn pid file at $pidfile (is the gateway running?)" >&2; exit 1; }
# Before a worker switches, every file api.env names must load and predict (in a child process), and fit the
# experiments using its name (their other models, and the file it replaces); a refusal prints the reason.
PYTHONPATH="$PWD" .venv/bin/python -m ml_api.cli models validate >/dev/null \
    || { echo "reload: refused, the gateway keeps its current models" >&2; exit 1; }
kill -HUP "$(cat "$pidfile")"
echo "reload: sent HUP to gunicorn $(cat "$pidfile"); check /ready for the model versions"

proxy_dir="$PROXY_DIR"
[[ "$proxy_dir" = /* ]] || proxy_dir="$PWD/$proxy_dir"
if [ -f "$proxy_dir/nginx.pid" ]; then
    nginx_command=$(.venv/bin/python -m scripts.nginx_conf render)
    $nginx_command -t -q
    kill -HUP "$(cat "$proxy_dir/nginx.pid")"
    echo "reload: nginx $(cat "$proxy_dir/nginx.pid") reloads its config, rendered again from api.env"
fi
