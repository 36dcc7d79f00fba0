"""Safe rollouts end to end: gunicorn with 3 workers over HTTP, real Redis and MySQL.

Shadow: a shadow model that sleeps 200 ms or raises changes nothing for callers, and
exactly the hash-chosen share of requests is mirrored. Ramp: the workers advance each step
exactly once, not before its minimum duration, and nobody who was in leaves or changes
variant. Rollback: a failing variation pauses the experiment once, within a bounded number
of requests, while every request is answered.
"""

import json
import statistics
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from scipy.stats import binomtest

from assigner import bucket, choose_variant
from ml_api.experiments.definitions import VariantSpec
from ml_api.experiments.repository import ExperimentRepository
from ml_api.rollout.shadow import is_mirrored
from tests.conftest import Gateway, read_events, start_gateway
from tests.model_doubles import FailingModel, SlowModel, with_models
from tests.waiting import wait_until, wait_until_moment

TOKEN = "e2e-rollout-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Actor": "e2e"}
IRIS = [5.1, 3.5, 1.4, 0.2]
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "logstash" / "event.schema.json").read_text())
PERCENT = 30
REQUESTS_PER_PHASE = 120
STRICT_P = 1e-3
PACED_RATE = 80  # requests a second while waiting for a guardrail pause


@pytest.fixture
def settings(overrides, model_dir, tmp_path) -> dict[str, str]:
    """This test's settings with two more models, the admin token and a 0.2 s rollout tick."""
    extra = with_models(overrides, model_dir, tmp_path, slow=SlowModel(0.2), failing=FailingModel())
    return {**extra, "ADMIN_TOKEN": TOKEN}


@pytest.fixture
def gateway(settings, tmp_path):
    gw = start_gateway(settings, tmp_path, workers=3)
    yield gw
    gw.stop()


@pytest.fixture
def repo(db) -> ExperimentRepository:
    """A repository that knows the extra models, to create experiments that use them."""
    return ExperimentRepository(db, ["logreg", "forest", "slow", "failing"])


def create(repo: ExperimentRepository, models: tuple[str, str] = ("logreg", "forest")) -> str:
    name = f"e2e-roll-{time.monotonic_ns() % 10**9}"
    repo.create(name, [VariantSpec("control", 50, models[0]), VariantSpec("variation", 50, models[1])],
                actor="test", status="running")
    return name


def admin(gateway: Gateway, method: str, path: str, body: Any = None) -> Any:
    response = gateway.session.request(method, f"{gateway.url}/admin/experiments/{path}", json=body, headers=AUTH,
                                       timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def predict(gateway: Gateway, name: str, user: str) -> tuple[dict, float]:
    """The answer and its latency in ms, as the caller sees it."""
    started = time.perf_counter()
    response = gateway.post("/predict", {"user_id": user, "experiment": name, "features": IRIS})
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200, response.text
    return response.json(), elapsed


def events(settings: dict[str, str], action: str, name: str) -> list[dict]:
    found = read_events(Path(settings["EVENT_FILE"]))
    return [e for e in found if e["event"]["action"] == action and e["experiment"]["name"] == name]


def wait_for_every_worker_to_reload(gateway: Gateway, repo: ExperimentRepository) -> None:
    """Wait until every worker's rollout thread has reloaded the rollout states since now.

    The marker: a new experiment whose every request is mirrored. A worker mirrors it only once
    its rollout thread has loaded the states after the marker was made, and with the marker
    every change made before it; any tick of that worker that still used older states is over."""
    marker = create(repo)
    admin(gateway, "PUT", f"{marker}/shadow", {"model": "logreg", "percent": 100})
    gateway.reach_every_worker(marker, "shadow_predict")


def ready_on_every_worker(gateway: Gateway) -> list[dict]:
    """/ready from fresh connections, so that every worker answers at least once (very likely)."""
    return [requests.get(f"{gateway.url}/ready", headers={"Connection": "close"}, timeout=10).json() for _ in range(9)]


def test_shadow_models_never_touch_the_callers_answer(gateway, settings, repo):
    name = create(repo, ("logreg", "logreg"))
    salt = repo.get(name).salt
    for i in range(30):  # warm every worker's connections before measuring
        predict(gateway, name, f"warm-{i}")
    latency: dict[str, list[float]] = {}  # per phase: of the requests a 30 % shadow mirrors
    expected: dict[str, set[str]] = {}  # per phase: request ids of the hash-chosen users
    for phase in ("off", "slow", "failing"):
        if phase != "off":
            admin(gateway, "PUT", f"{name}/shadow", {"model": phase, "percent": PERCENT})
            wait_for_every_worker_to_reload(gateway, repo)  # else a worker may still mirror the last phase's model
        users = [f"{phase}-{i}" for i in range(REQUESTS_PER_PHASE)]
        timed = {user: predict(gateway, name, user) for user in users}
        assert {(b["prediction"], b["fallback"], b["model"]["name"]) for b, _ in timed.values()} == {
            ("setosa", False, "logreg")}
        mirrored = [user for user in users if is_mirrored(salt, user, PERCENT)]
        latency[phase] = sorted(timed[user][1] for user in mirrored)
        expected[phase] = {timed[user][0]["request_id"] for user in mirrored}
    baseline = statistics.median(latency["off"])
    for phase in ("slow", "failing"):
        assert abs(statistics.median(latency[phase]) - baseline) < 20, (phase, baseline, latency[phase])
        assert latency[phase][int(0.9 * len(latency[phase]))] < 150, f"{phase}: the shadow must not be waited for"

    total = len(expected["slow"]) + len(expected["failing"])
    assert binomtest(total, 2 * REQUESTS_PER_PHASE, PERCENT / 100).pvalue > STRICT_P
    wait_until(lambda: len(events(settings, "shadow_predict", name)) >= total, message=f"{total} shadow_predict events")
    shadow_events = events(settings, "shadow_predict", name)
    for event in shadow_events:
        jsonschema.validate(event, SCHEMA)
    for phase in ("slow", "failing"):
        seen = {e["http"]["request"]["id"] for e in shadow_events if e["model"]["name"] == phase}
        assert seen == expected[phase], f"{phase}: mirrored exactly the hash-chosen users"
    assert {e["event"]["outcome"] for e in shadow_events if e["model"]["name"] == "failing"} == {"failure"}
    assert all(e["shadow"]["agrees"] for e in shadow_events if e["model"]["name"] == "slow")

    def summary() -> dict | None:
        models = gateway.get(f"/experiments/{name}/results").json()["shadow"]["models"]
        counts = {m["model"]: (m["predictions"], m["errors"]) for m in models}
        want = {"failing": (len(expected["failing"]),) * 2, "slow": (len(expected["slow"]), 0)}
        return counts if counts == want else None

    wait_until(summary, message="every shadow prediction is recorded for the results")


def test_a_ramp_advances_once_per_step_and_keeps_everyone_who_was_in(gateway, repo):
    name = create(repo)
    experiment = repo.get(name)
    users = [f"ramp-{i}" for i in range(150)]
    steps = [{"allocation": 0.1, "min_seconds": 1.5}, {"allocation": 0.4, "min_seconds": 1.5}, {"allocation": 1.0}]
    admin(gateway, "PUT", f"{name}/ramp", {"steps": steps})
    seen: dict[str, list[tuple[bool, str]]] = {u: [] for u in users}
    inside_per_round: list[int] = []
    deadline = time.monotonic() + 30
    while (not inside_per_round or inside_per_round[-1] < len(users)) and time.monotonic() < deadline:
        for user in users:
            body, _ = predict(gateway, name, user)
            seen[user].append((body["in_experiment"], body["variant"]))
        inside_per_round.append(sum(answers[-1][0] for answers in seen.values()))
    assert inside_per_round == sorted(inside_per_round) and inside_per_round[-1] == len(users), inside_per_round
    assert len(inside_per_round) >= 3, "rounds ran at several steps"
    for user, answers in seen.items():
        first_in = next((i for i, (inside, _) in enumerate(answers) if inside), None)
        assert first_in is not None, f"{user} never joined"
        assert all(inside for inside, _ in answers[first_in:]), f"{user} left the experiment: {answers}"
        expected = choose_variant(experiment.variants, bucket(experiment.salt, user))
        assert {variant for _, variant in answers[first_in:]} == {expected}, f"{user} changed variant: {answers}"
        assert {variant for _, variant in answers[:first_in]} <= {"control"}, "outside: the default variant"

    changes = admin(gateway, "GET", f"{name}/history")["changes"]
    ramp = [c for c in changes if c["action"] in ("set_ramp", "ramp_advance")]
    assert [(c["action"], c["actor"], c["after"]["traffic_allocation"]) for c in ramp] == [
        ("set_ramp", "admin:e2e", 0.1), ("ramp_advance", "ramp", 0.4), ("ramp_advance", "ramp", 1.0)]
    times = [datetime.fromisoformat(c["changed_at"].rstrip("Z")) for c in ramp]
    # The step clock itself is enforced by MySQL (step_started_at in the compare-and-set); a
    # history row is written at the end of its transaction, so under load its time may lag
    # the step clock by a few hundred milliseconds. Back-to-back advances would be ~0 s apart.
    assert all((later - earlier).total_seconds() >= 1.0 for earlier, later in zip(times, times[1:])), times


def requests_until_paused(gateway, name: str, prefix: str, limit: int = 1500) -> int:
    """Paced requests of new users until one is answered as paused; how many it took (all answered).

    About 80 requests a second, on a schedule: a count of requests then stands for a time."""
    started = time.monotonic()
    for sent in range(1, limit + 1):
        wait_until_moment(started + (sent - 1) / PACED_RATE)
        body, _ = predict(gateway, name, f"{prefix}-{sent}")
        assert body["fallback"] is (body["variant"] == "variation" and body["in_experiment"])
        if body["experiment_status"] == "paused":
            return sent
    raise AssertionError(f"not paused after {limit} requests")


def test_a_failing_variation_is_paused_once_while_every_request_is_answered(gateway, settings, repo):
    name = create(repo, ("logreg", "failing"))
    admin(gateway, "PATCH", name, {"guardrails": {"max_fallback_rate": 0.2, "min_requests": 30}})
    wait_for_every_worker_to_reload(gateway, repo)  # the guardrail is in force everywhere before requests count
    sent = requests_until_paused(gateway, name, "guard")
    assert sent <= 600, f"paused only after {sent} requests"

    # Every worker has reloaded the paused experiment, so none can still act on the breach: one pause only.
    wait_for_every_worker_to_reload(gateway, repo)
    (pause,) = [c for c in admin(gateway, "GET", f"{name}/history")["changes"] if c["action"] == "guardrail_pause"]
    breach = pause["after"]["rollout"]["paused_by_guardrail"]
    assert pause["actor"] == "guardrail" and breach["guardrail"] == "max_fallback_rate"
    assert breach["variant"] == "variation" and breach["observed"] > breach["threshold"] == 0.2
    (event,) = wait_until(lambda: events(settings, "guardrail_breach", name), message="a guardrail_breach event")
    jsonschema.validate(event, SCHEMA)
    metric = f'abtest_guardrail_breaches_total{{experiment="{name}",guardrail="max_fallback_rate"}}'
    assert [line for line in gateway.get("/metrics").text.splitlines() if line.startswith(metric)] == [f"{metric} 1.0"]
    for ready in ready_on_every_worker(gateway):
        assert ready["status"] == "degraded" and ready["checks"]["rollout"]["status"] == "degraded"
        assert name in [p["experiment"] for p in ready["checks"]["rollout"]["paused_by_guardrail"]]

    admin(gateway, "POST", f"{name}/start")  # resume: an explicit admin action
    wait_for_every_worker_to_reload(gateway, repo)
    for ready in ready_on_every_worker(gateway):
        assert name not in [p["experiment"] for p in ready["checks"]["rollout"]["paused_by_guardrail"]]
    # Still failing: the guardrails judge the requests since the resume at once, not from the next
    # minute on (which would take up to 60 s, some 4,800 requests at this pace).
    again = requests_until_paused(gateway, name, "after-resume")
    assert again <= 600, f"paused again only after {again} requests"
    assert [c["action"] for c in admin(gateway, "GET", f"{name}/history")["changes"]][-3:] == [
        "guardrail_pause", "start", "guardrail_pause"]
    admin(gateway, "POST", f"{name}/stop")
