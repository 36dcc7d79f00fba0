"""MODEL_TIMEOUT_MS under both worker classes, over HTTP: a variation that overruns its budget,
sleeping or holding the CPU, is answered by control on time, and the worker keeps answering
other requests meanwhile (under gevent, only because the model runs on a native thread)."""

import threading
import time

import pytest
import requests

from ml_api.experiments.definitions import VariantSpec
from ml_api.experiments.repository import ExperimentRepository
from tests.conftest import BOTH_WORKER_CLASSES, start_gateway
from tests.model_doubles import SlowModel, SpinningModel, with_models
from tests.waiting import wait_until

pytestmark = BOTH_WORKER_CLASSES

IRIS = [5.1, 3.5, 1.4, 0.2]
BUDGET_MS = 200
OVERRUN_SECONDS = 5.0  # what an abandoned call would have cost
# Half the overrun: a request held behind an overrunning model waits all of it, while on a
# loaded 2-core machine three spinning threads can make a free one wait ~2 s for the GIL.
ON_TIME_SECONDS = OVERRUN_SECONDS / 2
OVERRUNNING_REQUESTS = 3


@pytest.fixture
def budget_gateway(overrides, model_dir, tmp_path):
    """One worker (every request meets the overrunning models there), two models past the budget."""
    settings = with_models(overrides, model_dir, tmp_path,
                           slow=SlowModel(OVERRUN_SECONDS), spinning=SpinningModel(OVERRUN_SECONDS))
    gw = start_gateway({**settings, "MODEL_TIMEOUT_MS": str(BUDGET_MS)}, tmp_path, workers=1)
    yield gw
    gw.stop()


def create(db, models: tuple[str, str], weights: tuple[int, int]) -> str:
    name = f"e2e-budget-{time.monotonic_ns() % 10**9}"
    ExperimentRepository(db, ["logreg", "slow", "spinning"]).create(
        name, [VariantSpec("control", weights[0], models[0]), VariantSpec("variation", weights[1], models[1])],
        actor="test", status="running")
    return name


def timed_predict(session: requests.Session, url: str, experiment: str, user: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = session.post(f"{url}/predict", timeout=30,
                                    json={"user_id": user, "experiment": experiment, "features": IRIS})
    return response.status_code, response.json(), time.monotonic() - started


@pytest.mark.parametrize("model", ["slow", "spinning"])
def test_a_variation_past_its_budget_gets_the_fallback_on_time_and_blocks_nobody(budget_gateway, db, model):
    overrunning = create(db, ("logreg", model), (0, 100))
    plain = create(db, ("logreg", "logreg"), (100, 0))
    wait_until(lambda: budget_gateway.post("/predict", {"user_id": "warm", "experiment": plain,
                                                         "features": IRIS}).status_code == 200,
               message="the worker knows the experiments")
    answers: list[tuple[int, dict, float]] = []

    def overrun(index: int) -> None:
        answers.append(timed_predict(requests.Session(), budget_gateway.url, overrunning, f"over-{index}"))

    threads = [threading.Thread(target=overrun, args=(i,)) for i in range(OVERRUNNING_REQUESTS)]
    for thread in threads:
        thread.start()
    meanwhile = [timed_predict(budget_gateway.session, budget_gateway.url, plain, f"plain-{i}") for i in range(20)]
    for thread in threads:
        thread.join()

    assert len(answers) == OVERRUNNING_REQUESTS
    for status, body, elapsed in answers:
        assert status == 200, body
        assert (body["variant"], body["fallback"], body["model"]["name"]) == ("variation", True, "logreg")
        assert elapsed < ON_TIME_SECONDS, f"the fallback came after {elapsed:.2f} s (budget {BUDGET_MS} ms)"
    assert all(status == 200 for status, _, _ in meanwhile)
    slowest = max(elapsed for _, _, elapsed in meanwhile)
    assert slowest < ON_TIME_SECONDS, f"a request of another experiment waited {slowest:.2f} s behind the {model} model"
