"""End to end through a real gunicorn (2 workers) over HTTP, on real Redis and MySQL."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
from scipy.stats import chisquare

from tests.conftest import BOTH_WORKER_CLASSES, start_gateway


IRIS = [5.9, 3.0, 5.1, 1.8]
STRICT_P = 1e-4  # a correct split fails this check once in 10,000 runs
_local = threading.local()


def post_predict(url: str, experiment: str, user_id: str) -> dict:
    session = getattr(_local, "session", None) or requests.Session()
    _local.session = session
    response = session.post(f"{url}/predict", json={"user_id": user_id, "experiment": experiment, "features": IRIS},
                            timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def variants_of(gateway, experiment: str, users: list[str], rounds: int = 1) -> list[dict[str, str]]:
    """The variant each user got, for each round of requests over all users (8 clients in parallel)."""
    results = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(rounds):
            answers = pool.map(lambda u: post_predict(gateway.url, experiment, u)["variant"], users)
            results.append(dict(zip(users, answers)))
    return results


def assert_split_matches(variants: dict[str, str], weights: dict[str, float]) -> None:
    counts = Counter(variants.values())
    total = sum(weights.values())
    names = list(weights)
    expected = [len(variants) * weights[n] / total for n in names]
    observed = [counts.get(n, 0) for n in names]
    assert set(counts) <= set(names)
    p_value = chisquare(observed, expected).pvalue
    assert p_value > STRICT_P, f"split {observed} vs expected {expected}: p={p_value}"


def test_4000_users_keep_their_variant_and_split_by_weight(gateway, make_experiment):
    experiment = make_experiment((70, 30))
    users = [f"user-{i}" for i in range(4000)]
    rounds = variants_of(gateway, experiment, users, rounds=2)
    changed = [u for u in users if len({r[u] for r in rounds}) != 1]
    assert changed == [], f"{len(changed)} users changed variant, e.g. {changed[:5]}"
    assert_split_matches(rounds[0], {"control": 70, "variation": 30})
    assert stored_users(gateway, experiment) == len(users)


def stored_users(gateway, experiment: str) -> int:
    """Exposures in MySQL, once the spool is empty (under load a few may have been spooled)."""
    gateway.wait_for_empty_spool()
    return sum(v["users"] for v in gateway.get(f"/experiments/{experiment}").json()["variants"])


def wait_for_definitions(gateway, make_experiment) -> None:
    """Wait until every worker serves the definitions as they are now.

    A worker answers for an experiment made after the change only once it has reloaded the
    definitions since, and so has the change too."""
    gateway.reach_every_worker(make_experiment(), "predict")


def test_weight_change_keeps_earlier_users_and_moves_new_ones(gateway, repo, make_experiment):
    experiment = make_experiment((50, 50))
    early = [f"early-{i}" for i in range(2000)]
    before = variants_of(gateway, experiment, early)[0]
    repo.set_weights(experiment, {"control": 10, "variation": 90}, actor="test")
    wait_for_definitions(gateway, make_experiment)
    after = variants_of(gateway, experiment, early)[0]
    assert after == before
    late = variants_of(gateway, experiment, [f"late-{i}" for i in range(2000)])[0]
    assert_split_matches(late, {"control": 10, "variation": 90})


@pytest.fixture
def private_gateway(overrides, private_redis, tmp_path):
    """Its own Redis, and no worker memory: what follows must come from Redis or MySQL."""
    gw = start_gateway({**overrides, "REDIS_URL": private_redis, "STICKY_MEMORY_USERS": "0"}, tmp_path)
    yield gw
    gw.stop()


@BOTH_WORKER_CLASSES  # Redis faults and the feedback path: worker-class guarantees
def test_flushed_redis_changes_nobody(private_gateway, private_redis, repo, make_experiment):
    experiment = make_experiment((50, 50))
    users = [f"flush-{i}" for i in range(600)]
    before = variants_of(private_gateway, experiment, users)[0]
    redis.Redis.from_url(private_redis).flushall()
    # New weights would move everyone whose answer came from the hash alone.
    repo.set_weights(experiment, {"control": 1, "variation": 99}, actor="test")
    wait_for_definitions(private_gateway, make_experiment)
    assert variants_of(private_gateway, experiment, users)[0] == before


@BOTH_WORKER_CLASSES  # Redis faults and the feedback path: worker-class guarantees
def test_stopped_redis_still_answers_and_keeps_variants(private_gateway, private_redis, repo, make_experiment):
    experiment = make_experiment((50, 50))
    users = [f"down-{i}" for i in range(400)]
    before = variants_of(private_gateway, experiment, users)[0]
    redis.Redis.from_url(private_redis).shutdown(nosave=True)
    repo.set_weights(experiment, {"control": 99, "variation": 1}, actor="test")
    wait_for_definitions(private_gateway, make_experiment)
    assert variants_of(private_gateway, experiment, users)[0] == before  # every request answered 200
    ready = private_gateway.get("/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["redis"]["status"] == "error"


@BOTH_WORKER_CLASSES  # Redis faults and the feedback path: worker-class guarantees
def test_feedback_end_to_end(gateway, make_experiment):
    experiment = make_experiment()
    served = post_predict(gateway.url, experiment, "fb-user")
    response = gateway.post("/feedback", {"request_id": served["request_id"], "outcome": True})
    assert response.status_code == 202 and response.json()["variant"] == served["variant"]
