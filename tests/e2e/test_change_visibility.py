"""A change is seen by every request that starts more than CONFIG_REFRESH_SECONDS after it was committed.

On every worker, and in a burst after a quiet moment: the requests that find their worker's
definitions due wait for the one refresh instead of answering from the old definitions.
"""

import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from assigner import ExperimentStatus
from ml_api.experiments.definitions import VariantSpec
from tests.conftest import Gateway, start_gateway
from tests.waiting import wait_until_moment

REFRESH_SECONDS = 0.3
LULL_SECONDS = 1.0  # longer than the refresh interval: every worker's definitions are due
BURST = 24
IRIS = [5.7, 2.8, 4.1, 1.3]


@pytest.fixture
def gateway(overrides, tmp_path) -> Iterator[Gateway]:
    gw = start_gateway({**overrides, "CONFIG_REFRESH_SECONDS": str(REFRESH_SECONDS)}, tmp_path, workers=2)
    yield gw
    gw.stop()


def predict(url: str, experiment: str, user: str) -> requests.Response:
    """One request on a connection of its own, so the burst spreads over both workers."""
    return requests.post(f"{url}/predict", json={"user_id": user, "experiment": experiment, "features": IRIS},
                         headers={"Connection": "close"}, timeout=30)


def burst_after_a_lull(gateway: Gateway, warm_experiment: str, change: Callable[[], object],
                       experiment: str) -> list[dict]:
    """Warm every worker, stay quiet, make ``change``, wait out the promised bound, then send a burst."""
    for i in range(8):
        assert predict(gateway.url, warm_experiment, f"warm-{i}").status_code == 200
    wait_until_moment(time.monotonic() + LULL_SECONDS)  # the quiet moment is the condition under test
    change()
    # The promise is about requests that start after the bound: waiting it out is the test, not a guess.
    wait_until_moment(time.monotonic() + REFRESH_SECONDS + 0.05)
    users = [f"burst-{secrets.token_hex(4)}" for _ in range(BURST)]
    with ThreadPoolExecutor(BURST) as pool:
        responses = list(pool.map(lambda user: predict(gateway.url, experiment, user), users))
    assert [r.status_code for r in responses] == [200] * BURST, [r.text for r in responses if r.status_code != 200]
    return [r.json() for r in responses]


def test_a_created_experiment_answers_every_request_of_a_burst(gateway, make_experiment, repo):
    name = f"exp-{secrets.token_hex(4)}"
    variants = [VariantSpec("control", 50, "logreg"), VariantSpec("variation", 50, "logreg")]
    answers = burst_after_a_lull(gateway, make_experiment(),
                                 lambda: repo.create(name, variants, "test", status=ExperimentStatus.RUNNING), name)
    assert {a["experiment"] for a in answers} == {name}


def test_a_pause_reaches_every_request_of_a_burst(gateway, make_experiment, repo):
    name = make_experiment()
    answers = burst_after_a_lull(gateway, name, lambda: repo.set_status(name, "paused", "test"), name)
    assert {a["experiment_status"] for a in answers} == {"paused"}


def test_new_weights_reach_every_new_user_of_a_burst(gateway, make_experiment, repo):
    name = make_experiment(weights=(50, 50))
    answers = burst_after_a_lull(gateway, name, lambda: repo.set_weights(name, {"control": 0, "variation": 100},
                                                                          "test"), name)
    assert {a["variant"] for a in answers} == {"variation"}
