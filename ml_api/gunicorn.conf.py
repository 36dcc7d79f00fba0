"""Gunicorn settings, taken from api.env (and environment overrides) like everything else.

Not preloaded: each worker loads the models itself, so ``kill -HUP`` (``make reload``)
starts workers that read an edited api.env while the old ones finish their requests.
"""

import gc
import os
import shutil

# prometheus_client picks multiprocess mode when first imported, and importing ml_api.config
# imports the ml_api package, which imports it, here in the master: the variable must exist before.
# Its value, read when a worker writes its first sample, is set just below.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", "")

from ml_api.config import UNIX_PREFIX, load_config  # noqa: E402

_config = load_config(os.environ)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_config.metrics_dir)

bind = _config.gunicorn_bind  # nginx listens on API_HOST:API_PORT and hands requests on here
workers = _config.gunicorn_workers
worker_class = _config.gunicorn_worker_class  # gthread or gevent: README, "Worker class"
threads = _config.gunicorn_threads  # gthread only
worker_connections = _config.gunicorn_worker_connections
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
    if bind.startswith(UNIX_PREFIX):  # the socket's directory (var/) must exist before gunicorn binds
        os.makedirs(os.path.dirname(bind[len(UNIX_PREFIX):]), exist_ok=True)
    shutil.rmtree(_config.metrics_dir, ignore_errors=True)  # samples of a previous run
    os.makedirs(_config.metrics_dir, exist_ok=True)


def child_exit(server, worker) -> None:
    """Keep a dead worker's counters but drop its live gauges (prometheus multiprocess)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker) -> None:
    """Before the worker serves: start its background threads, and take what it loaded out of the GC's sight.

    The app, its models and every imported module are a large number of objects that live
    as long as the worker. Python's full collection walks them all, holding the GIL (every
    request thread of the worker) while it does; the queued events and samples of a few
    thousand requests set one off. Frozen, they are never walked again, and a full
    collection only looks at what came after (the usual pre-fork server practice)."""
    from ml_api.services import of_app

    if services := of_app(worker.wsgi):
        services.start()
    gc.collect()  # nothing collectable ends up frozen
    gc.freeze()


def worker_exit(server, worker) -> None:
    """Before a worker goes away: its threads end, and what they hold goes to disk, Redis and MySQL."""
    from ml_api.services import of_app

    if services := of_app(getattr(worker, "wsgi", None)):
        services.stop()
