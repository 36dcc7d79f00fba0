"""The services own every background thread of a worker: ``start`` starts them all, ``stop`` ends them all."""

import threading

from tests.waiting import wait_until

WORKER_THREADS = {"event-shipper", "spool-delivery", "metrics-writer", "request-stats-flusher", "request-ids",
                  "rollout", "results-fold"}


def test_building_an_app_starts_nothing_start_starts_every_thread_and_stop_ends_them(make_app):
    before = set(threading.enumerate())

    def started() -> list[threading.Thread]:  # this app's worker threads (other tests may leave theirs)
        return [t for t in threading.enumerate() if t not in before and t.name in WORKER_THREADS]

    svc = make_app().extensions["ml_api"]
    assert not started(), "building the app starts nothing: gunicorn starts the threads after the fork"
    svc.start()
    svc.start()  # idempotent: still one of each
    threads = started()
    assert sorted(t.name for t in threads) == sorted(WORKER_THREADS)
    svc.stop()
    wait_until(lambda: not any(t.is_alive() for t in threads), timeout=15,
               message=lambda: f"still running after stop: {[t.name for t in threads if t.is_alive()]}")
