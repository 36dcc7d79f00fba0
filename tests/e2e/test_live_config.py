"""A change made through the admin API reaches every worker within 2 seconds, no restart."""

import time

import requests

from tests.conftest import start_gateway
from tests.waiting import wait_until_moment

TOKEN = "live-config-token"
IRIS = [5.7, 2.8, 4.1, 1.3]


def statuses(url: str, experiment: str, count: int) -> set[str]:
    """The experiment status seen by ``count`` requests, each on a new connection (any worker)."""
    seen = set()
    for i in range(count):
        response = requests.post(f"{url}/predict", json={"user_id": f"live-{i}", "experiment": experiment,
                                                           "features": IRIS}, headers={"Connection": "close"}, timeout=10)
        assert response.status_code == 200
        seen.add(response.json()["experiment_status"])
    return seen


def test_pause_reaches_every_worker_within_two_seconds(overrides, tmp_path, make_experiment):
    experiment = make_experiment()
    gateway = start_gateway({**overrides, "ADMIN_TOKEN": TOKEN, "CONFIG_REFRESH_SECONDS": "1"}, tmp_path, workers=3)
    try:
        assert statuses(gateway.url, experiment, 30) == {"running"}
        changed = requests.post(f"{gateway.url}/admin/experiments/{experiment}/pause",
                                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert changed.status_code == 200
        # The 2 s bound is what is tested, so the requests start once it has passed; nothing needs polling
        # after it. Every request that starts more than CONFIG_REFRESH_SECONDS (1 s) after the change sees
        # it, on every worker, however slow the machine runs.
        wait_until_moment(time.monotonic() + 2.0)
        assert statuses(gateway.url, experiment, 60) == {"paused"}
    finally:
        gateway.stop()
