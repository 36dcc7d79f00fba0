"""Events from a real gunicorn gateway to a stand-in for Logstash's http input
(``tests/logstash_standin.py``): JSON lines POSTed, stored once acknowledged."""

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest
import requests

from tests.conftest import BOTH_WORKER_CLASSES, free_port, request_id, start_gateway
from tests.logstash_standin import StandInLogstash
from tests.waiting import wait_until

pytestmark = BOTH_WORKER_CLASSES

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "logstash" / "event.schema.json").read_text())
IRIS = [6.3, 2.9, 5.6, 1.8]


def by_action(events: list[dict], action: str) -> list[dict]:
    return [e for e in events if e["event"]["action"] == action]


@pytest.fixture
def listener():
    server = StandInLogstash(free_port())
    yield server
    server.stop()


@pytest.fixture
def shipping_gateway(overrides, listener, tmp_path):
    gateway = start_gateway({**overrides, "LOGSTASH_HOST": "127.0.0.1", "LOGSTASH_PORT": str(listener.port)}, tmp_path)
    yield gateway
    gateway.stop()


def predict(gateway, experiment: str, user_id: str) -> requests.Response:
    return gateway.post("/predict", {"user_id": user_id, "experiment": experiment, "features": IRIS})


def test_every_request_yields_exactly_one_valid_event(listener, shipping_gateway, make_experiment):
    listener.start()
    experiment = make_experiment((50, 50), models=("logreg", "forest"))
    served = [predict(shipping_gateway, experiment, f"contract-{i}").json() for i in range(40)]
    feedback = shipping_gateway.post("/feedback", {"request_id": served[0]["request_id"], "outcome": True})
    assert feedback.status_code == 202
    bad = shipping_gateway.post("/predict", {"features": IRIS, "experiment": experiment})
    assert bad.status_code == 400

    wait_until(lambda: len(listener.events()) >= 42, message="42 events received")
    # Anything beyond the expected 42 would be a duplicate. Each worker ships its events in order, so
    # once every worker's event of a later marker request is in, any duplicate of that worker's is too.
    markers = shipping_gateway.reach_every_worker(experiment, "predict", events=listener.events)
    events = [e for e in listener.events() if request_id(e) not in markers]
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for event in events:
        assert not list(validator.iter_errors(event)), event
    predicts = by_action(events, "predict")
    assert sorted(e["http"]["request"]["id"] for e in predicts) == sorted(s["request_id"] for s in served)
    assert len(by_action(events, "feedback")) == 1
    errors = by_action(events, "error")
    assert len(errors) == 1 and errors[0]["http"]["response"]["status_code"] == 400
    assert len(events) == 42
    for event, answer in zip(sorted(predicts, key=lambda e: e["http"]["request"]["id"]),
                             sorted(served, key=lambda s: s["request_id"])):
        assert event["experiment"]["variant"] == answer["variant"]
        assert event["model"]["name"] == answer["model"]["name"]
        assert event["prediction"]["label"] == answer["prediction"]
        assert "id" not in event["user"]  # raw ids only with LOG_RAW_USER_ID=true


def test_events_wait_on_disk_while_logstash_is_down(listener, shipping_gateway, make_experiment):
    experiment = make_experiment()
    users = [f"durable-{i}" for i in range(1000)]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda u: predict(shipping_gateway, experiment, u), users))
    elapsed = time.monotonic() - started
    assert [a.status_code for a in answers] == [200] * len(users)
    request_ids = {a.json()["request_id"] for a in answers}

    listener.start()  # Logstash comes back

    def missing() -> set[str]:
        return request_ids - {e["http"]["request"]["id"] for e in by_action(listener.events(), "predict")}

    wait_until(lambda: not missing(),
               message=lambda: f"{len(missing())} of {len(request_ids)} events lost (requests took {elapsed:.1f}s)")


def test_logstash_dying_in_the_middle_of_batches_under_load_loses_no_event(listener, shipping_gateway,
                                                                          make_experiment):
    listener.start()
    experiment = make_experiment()
    request_ids: set[str] = set()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for round_ in range(3):  # die half-way through a batch, restart, go on
            listener.crash_during_next_batches(1)
            answers = list(pool.map(lambda n: predict(shipping_gateway, experiment, f"crash-{round_}-{n}"),
                                    range(200)))
            assert [a.status_code for a in answers] == [200] * len(answers)
            request_ids |= {a.json()["request_id"] for a in answers}
            wait_until(lambda: not listener.running, message="the receiver never got a batch to die in")
            listener.start()

    def missing() -> set[str]:
        return request_ids - {e["http"]["request"]["id"] for e in by_action(listener.events(), "predict")}

    wait_until(lambda: not missing(), message=lambda: f"{len(missing())} of {len(request_ids)} events lost")
    assert listener.crashes == 3
