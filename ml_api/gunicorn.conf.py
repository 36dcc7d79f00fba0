"""Gunicorn settings, taken from api.env (and environment overrides) like everything else.

Not preloaded: each worker loads the models itself, so ``kill -HUP`` (``make reload``)
starts workers that read an edited api.env while the old ones finish their requests.
"""

import os
import shutil

from ml_api.config import load_config

_config = load_config(os.environ)
# prometheus_client reads this when a worker first imports it (multiprocess mode).
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_config.metrics_dir)

bind = f"{_config.api_host}:{_config.api_port}"
workers = _config.gunicorn_workers
worker_class = "gthread"
threads = _config.gunicorn_threads
timeout = _config.gunicorn_timeout
graceful_timeout = _config.gunicorn_timeout
keepalive = 5
pidfile = str(_config.gunicorn_pidfile)
accesslog = None
errorlog = "-"
loglevel = "info"
# Bound request lines and headers; the body is bounded by MAX_BODY_BYTES in the app.
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190


def on_starting(server) -> None:
    os.makedirs(os.path.dirname(pidfile), exist_ok=True)
    shutil.rmtree(_config.metrics_dir, ignore_errors=True)  # samples of a previous run
    os.makedirs(_config.metrics_dir, exist_ok=True)


def child_exit(server, worker) -> None:
    """Keep a dead worker's counters but drop its live gauges (prometheus multiprocess)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker) -> None:
    """Move queued events to the disk buffer before a worker goes away."""
    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", {})
    if "ml_api" in extensions:
        extensions["ml_api"].events.close()
