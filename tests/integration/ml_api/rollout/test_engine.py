"""Safe rollouts on real MySQL and Redis, in process: shadow, ramp, guardrail pause, admin API, CLI.

The rollout thread does not run here (gunicorn starts it); tests call ``tick()`` instead, so
every step is deterministic. Concurrent workers are played by threads with their own
MySQL connections.
"""

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from assigner import ExperimentStatus
from ml_api import cli
from ml_api.experiments.definitions import VariantSpec
from ml_api.experiments.records import Recorder
from ml_api.experiments.repository import ExperimentRepository
from ml_api.infra.database import Database
from ml_api.infra.spool import Spool
from ml_api.rollout.changes import RolloutRepository
from ml_api.rollout.guardrails import Breach
from ml_api.rollout.ramp import is_due
from ml_api.telemetry.request_stats import RequestStats
from tests.integration.ml_api.results.test_document import seed
from tests.model_doubles import FailingModel, SlowModel, with_models
from tests.paths import EVENT_SCHEMA
from tests.waiting import wait_until

TOKEN = "rollout-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Actor": "carol"}
IRIS = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [6.3, 3.3, 6.0, 2.5], [5.9, 3.0, 5.1, 1.8], [6.0, 2.2, 5.0, 1.5]]
SCHEMA = json.loads(EVENT_SCHEMA.read_text())
WORKERS = 6


@pytest.fixture
def rollout_app(make_app, overrides, model_dir, tmp_path):
    """An app with two more models: ``failing`` raises, ``slow`` takes 50 ms."""
    settings = with_models(overrides, model_dir, tmp_path, failing=FailingModel(), slow=SlowModel(0.05))
    return make_app(**{key: settings[key] for key in ("MODEL_DIR", "API_ENV_FILE")}, ADMIN_TOKEN=TOKEN)


@pytest.fixture
def client(rollout_app):
    return rollout_app.test_client()


@pytest.fixture
def rollout(rollout_app):
    return rollout_app.extensions["ml_api"].rollout


def create(app, weights=(50, 50), models=("logreg", "forest"), **kwargs) -> str:
    """A running experiment in the app's own repository (which knows the extra models)."""
    name = f"roll-{time.monotonic_ns() % 10**9}"
    variants = [VariantSpec("control", weights[0], models[0]), VariantSpec("variation", weights[1], models[1])]
    app.extensions["ml_api"].experiments.create(name, variants, actor="test", status="running", **kwargs)
    return name


def admin(client, method: str, path: str, body=None, status: int = 200) -> dict:
    response = getattr(client, method)(f"/admin/experiments/{path}", json=body, headers=AUTH)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def history(client, name: str) -> list[dict]:
    return admin(client, "get", f"{name}/history")["changes"]


def events(app, overrides, action: str) -> list[dict]:
    """Events of one kind written so far, each checked against the event schema."""
    app.extensions["ml_api"].events.flush()
    path = Path(overrides["EVENT_FILE"])
    found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    found = [e for e in found if e["event"]["action"] == action]
    for event in found:
        jsonschema.validate(event, SCHEMA)
    return found


def predict(client, name: str, user: str, features=IRIS[0]) -> dict:
    response = client.post("/predict", json={"user_id": user, "experiment": name, "features": features})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def results(client, name: str) -> dict:
    response = client.get(f"/experiments/{name}/results")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def metric(client, line_start: str) -> float:
    """The value of the one /metrics sample whose line starts with ``line_start``."""
    text = client.get("/metrics").get_data(as_text=True)
    (value,) = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start)]
    return float(value)


def in_parallel(action, count: int = WORKERS) -> list:
    """Run ``action(i)`` in ``count`` threads released at the same moment; their answers in order."""
    barrier = threading.Barrier(count)
    answers = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        answers[i] = action(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


@pytest.fixture
def workers(config, rollout_app):
    """One RolloutRepository per simulated worker, each with its own MySQL connections."""
    databases = [Database(config.mysql) for _ in range(WORKERS)]
    names = rollout_app.extensions["ml_api"].models.names
    yield [RolloutRepository(ExperimentRepository(db, names), db, names) for db in databases]
    for db in databases:
        db.close()


# --- shadow ---------------------------------------------------------------------------

def test_shadow_is_set_shown_and_cleared_with_history(client, rollout_app, overrides):
    name = create(rollout_app)
    state = admin(client, "put", f"{name}/shadow", {"model": "slow", "percent": 12.5})
    assert state["shadow"] == {"model": "slow", "percent": 12.5} and state["ramp"] is None
    assert admin(client, "get", f"{name}/rollout")["shadow"] == {"model": "slow", "percent": 12.5}
    assert admin(client, "delete", f"{name}/shadow")["shadow"] is None
    changes = history(client, name)
    assert [(c["action"], c["actor"]) for c in changes] == [
        ("create", "test"), ("set_shadow", "admin:carol"), ("clear_shadow", "admin:carol")]
    assert "rollout" not in changes[1]["before"]
    assert changes[1]["after"]["rollout"]["shadow"] == {"model": "slow", "percent": 12.5}
    assert changes[2]["after"]["rollout"]["shadow"] is None
    changed = [e["change"]["action"] for e in events(rollout_app, overrides, "experiment_change")
               if e["experiment"]["name"] == name]
    assert sorted(changed) == ["clear_shadow", "create", "set_shadow"]  # shipped in batches: order is not kept


@pytest.mark.parametrize("body,status,detail", [
    ({"model": "nope", "percent": 10}, 422, "unknown shadow model 'nope'"),
    ({"model": {}, "percent": 10}, 422, "unknown shadow model {}"),
    ({"percent": 10}, 422, "unknown shadow model None"),
    ({"model": "slow", "percent": 0}, 422, "above 0 and at most 100"),
    ({"model": "slow", "percent": 100.5}, 422, "above 0 and at most 100"),
    ({"model": "slow", "percent": "10"}, 422, "above 0 and at most 100"),
    ({"model": "slow", "percent": True}, 422, "above 0 and at most 100"),
    ({"model": "slow", "percent": 5e-324}, 422, "above 0 and at most 100"),
])
def test_bad_shadow_settings_are_refused(client, rollout_app, body, status, detail):
    name = create(rollout_app)
    assert detail in admin(client, "put", f"{name}/shadow", body, status=status)["detail"]
    assert [c["action"] for c in history(client, name)] == ["create"]


@pytest.mark.parametrize("method,path", [("get", "rollout"), ("put", "shadow"), ("delete", "shadow"),
                                         ("put", "ramp"), ("delete", "ramp")])
def test_rollout_calls_need_the_token_and_a_known_experiment(client, method, path):
    response = getattr(client, method)(f"/admin/experiments/x/{path}", json={})
    assert response.status_code == 401
    assert admin(client, method, f"no-such/{path}", {"model": "slow", "percent": 5,
                                                      "steps": [{"allocation": 1}]}, status=404)


@pytest.mark.parametrize("shadow_model", ["failing", "slow"])
def test_mirrored_requests_are_answered_as_without_shadow_and_recorded(client, rollout_app, rollout, overrides,
                                                                      shadow_model):
    name = create(rollout_app, weights=(100, 0))
    plain = [predict(client, name, f"plain-{i}") for i in range(3)]
    admin(client, "put", f"{name}/shadow", {"model": shadow_model, "percent": 100})
    rollout.tick()
    mirrored = [predict(client, name, f"mirrored-{i}") for i in range(5)]
    assert {(b["prediction"], b["fallback"], b["model"]["name"]) for b in plain + mirrored} == {
        ("setosa", False, "logreg")}
    assert rollout.shadow.wait_idle(5)
    rollout.tick()
    shadow_events = events(rollout_app, overrides, "shadow_predict")
    assert sorted(e["http"]["request"]["id"] for e in shadow_events) == sorted(b["request_id"] for b in mirrored)
    assert all(e["shadow"]["served_label"] == "setosa" and e["model"]["name"] == shadow_model for e in shadow_events)
    (summary,) = results(client, name)["shadow"]["models"]
    failed = shadow_model == "failing"
    assert (summary["model"], summary["predictions"], summary["errors"]) == (shadow_model, 5, 5 if failed else 0)
    assert summary["agreement_rate"] == (None if failed else 1.0)


def test_agreement_and_accuracy_of_served_and_shadow_on_labelled_requests(client, rollout_app, rollout, overrides):
    name = create(rollout_app, weights=(100, 0), models=("slow", "logreg"))  # serves setosa, always
    admin(client, "put", f"{name}/shadow", {"model": "forest", "percent": 100})
    rollout.tick()
    served = [predict(client, name, f"acc-{i}", features) for i, features in enumerate(IRIS)]
    assert rollout.shadow.wait_idle(5)
    rollout.tick()
    shadow_label = {e["http"]["request"]["id"]: e["prediction"]["label"]
                    for e in events(rollout_app, overrides, "shadow_predict")}
    truth = {b["request_id"]: shadow_label[b["request_id"]] for b in served[:4]}  # the forest is right on these
    truth[served[0]["request_id"]] = "virginica"  # ... until a later label corrects the first one
    for request_id, label in [(served[0]["request_id"], "setosa"), *truth.items()]:
        assert client.post("/feedback", json={"request_id": request_id, "outcome": True,
                                              "label": label}).status_code == 202
    (summary,) = results(client, name)["shadow"]["models"]
    expected_agree = sum(label == "setosa" for label in shadow_label.values())
    assert summary["agreements"] == expected_agree and summary["agreement_rate"] == expected_agree / len(IRIS)
    assert summary["labelled"] == 4
    assert summary["served_correct"] == sum(label == "setosa" for label in truth.values())
    assert summary["shadow_correct"] == sum(truth[r] == shadow_label[r] for r in truth)
    assert summary["shadow_accuracy"] == summary["shadow_correct"] / 4


@pytest.mark.parametrize("label,detail", [(True, "label must be a string or a finite number"),
                                          ({"a": 1}, "label must be a string or a finite number"),
                                          ("x" * 256, "at most 255 characters"), ("  ", "must not be empty")])
def test_bad_labels_are_refused(client, rollout_app, label, detail):
    name = create(rollout_app)
    predict(client, name, "u-label")
    response = client.post("/feedback", json={"user_id": "u-label", "experiment": name, "outcome": 1, "label": label})
    assert response.status_code == 400 and detail in response.get_json()["detail"]


def test_a_label_sent_while_mysql_was_away_arrives_with_its_outcome(db, rollout_app, tmp_path):
    name = create(rollout_app)
    eid = rollout_app.extensions["ml_api"].experiments.get(name).id
    outcome = {"feedback_id": "f" * 32, "experiment_id": eid, "user_id": "u-1", "variant": "control",
               "request_id": "e" * 32, "value": 1.0, "label": "2", "at": "2026-01-01T00:00:00"}
    recorder = Recorder(db, Spool(tmp_path / "label-spool.db"))
    recorder.write_spooled([("outcome", outcome)])
    recorder.write_spooled([("outcome", outcome)])  # a replay is a no-op
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT request_id, label FROM feedback_labels WHERE experiment_id = %s", (eid,))
        assert cursor.fetchall() == [("e" * 32, "2")]


# --- ramp -----------------------------------------------------------------------------

def wait_until_step_is_due(repo: RolloutRepository, name: str) -> None:
    """Wait until the ramp's current step has lasted its min_seconds by MySQL's clock, the one
    an advance is judged by. The passage of time is what is tested: no fixed sleep guesses it."""

    def due() -> bool:
        state = repo.state(name)
        return is_due(state.ramp, state.ramp_step, state.seconds_in_step)

    wait_until(due, interval=0.05, message=f"the ramp step of {name} never became due")


def test_a_ramp_applies_its_first_step_at_once_and_is_refused_when_invalid(client, rollout_app):
    name = create(rollout_app)
    steps = [{"allocation": 0.05, "min_seconds": 3600}, {"allocation": 0.5, "min_seconds": 60}, {"allocation": 1}]
    state = admin(client, "put", f"{name}/ramp", {"steps": steps})
    assert state["ramp"]["step"] == 0 and state["ramp"]["allocation"] == 0.05 and not state["ramp"]["complete"]
    assert 3590 < state["ramp"]["next_step_in_seconds"] <= 3600
    assert client.get(f"/experiments/{name}").get_json()["traffic_allocation"] == 0.05
    bad = admin(client, "put", f"{name}/ramp", {"steps": [{"allocation": 0.5}, {"allocation": 0.2}]}, status=422)
    assert "rise strictly" in bad["detail"]
    assert admin(client, "delete", f"{name}/ramp")["ramp"] is None
    assert client.get(f"/experiments/{name}").get_json()["traffic_allocation"] == 0.05, "the allocation stays"
    assert [c["action"] for c in history(client, name)] == ["create", "set_ramp", "clear_ramp"]


def test_each_ramp_step_is_applied_once_by_one_of_many_workers(client, rollout_app, workers):
    name = create(rollout_app)
    # min_seconds leaves a loaded machine ample time for the "not due yet" look right after the PUT.
    steps = [{"allocation": 0.1, "min_seconds": 3.0}, {"allocation": 0.5, "min_seconds": 0}, {"allocation": 1.0}]
    admin(client, "put", f"{name}/ramp", {"steps": steps})
    assert not workers[0].advance_ramp(workers[0].state(name)), "not due yet"
    wait_until_step_is_due(workers[0], name)
    for step in (1, 2):
        state = workers[0].state(name)  # every worker saw the same step
        assert sorted(in_parallel(lambda i: workers[i].advance_ramp(state))) == [False] * (WORKERS - 1) + [True]
        assert workers[0].state(name).ramp_step == step
    assert not workers[0].advance_ramp(workers[0].state(name)), "the last step stays"
    advances = [c for c in history(client, name) if c["action"] == "ramp_advance"]
    assert [(c["actor"], c["before"]["traffic_allocation"], c["after"]["traffic_allocation"]) for c in advances] == [
        ("ramp", 0.1, 0.5), ("ramp", 0.5, 1.0)]
    assert [c["after"]["rollout"]["ramp"]["step"] for c in advances] == [1, 2]


def test_a_paused_ramp_waits_and_restarts_its_step_on_resume(client, rollout_app, rollout, overrides):
    name = create(rollout_app)
    # min_seconds leaves a loaded machine ample time between the start and the look that follows it.
    admin(client, "put", f"{name}/ramp", {"steps": [{"allocation": 0.2, "min_seconds": 2.0}, {"allocation": 1}]})
    admin(client, "post", f"{name}/pause")
    wait_until_step_is_due(rollout.repo, name)  # by its clock, were the experiment running
    rollout.tick()
    assert client.get(f"/experiments/{name}").get_json()["traffic_allocation"] == 0.2, "paused: no advance"
    admin(client, "post", f"{name}/start")
    rollout.tick()
    assert client.get(f"/experiments/{name}").get_json()["traffic_allocation"] == 0.2, "the step's clock restarted"
    wait_until_step_is_due(rollout.repo, name)
    rollout.tick()
    assert client.get(f"/experiments/{name}").get_json()["traffic_allocation"] == 1.0
    (advance,) = [e for e in events(rollout_app, overrides, "experiment_change") if e["experiment"]["name"] == name
                  and e["change"]["action"] == "ramp_advance"]
    assert advance["change"]["actor"] == "ramp"


# --- guardrails ------------------------------------------------------------------------

def record(db, eid: int, variant: str, requests: int, fallbacks: int, at: float | None = None) -> None:
    """Requests counted as the gateway counts them (per minute, shared by every worker)."""
    stats = RequestStats(db, clock=(lambda: at) if at is not None else time.time)
    for i in range(requests):
        stats.record(eid, variant, 5.0, fallback=i < fallbacks)
    stats.flush()


def test_one_pause_per_breach_however_many_workers_see_it(client, rollout_app, workers):
    name = create(rollout_app)
    state = workers[0].state(name)
    breach = Breach("max_fallback_rate", "variation", 0.4, 0.1, 250)
    paused = in_parallel(lambda i: workers[i].pause_for_breach(state, breach, minute=1000))
    assert sorted(paused) == [False] * (WORKERS - 1) + [True]
    (pause,) = [c for c in history(client, name) if c["action"] == "guardrail_pause"]
    assert pause["actor"] == "guardrail"
    assert (pause["before"]["status"], pause["after"]["status"]) == ("running", "paused")
    assert pause["after"]["rollout"]["paused_by_guardrail"] == {
        "guardrail": "max_fallback_rate", "variant": "variation", "observed": 0.4, "threshold": 0.1, "requests": 250}
    admin(client, "post", f"{name}/stop")  # a stopped experiment is not listed as paused by a guardrail


def test_a_breach_pauses_reports_everywhere_and_start_resumes(client, rollout_app, rollout, db, overrides):
    name = create(rollout_app, weights=(0, 100))
    eid = rollout_app.extensions["ml_api"].experiments.get(name).id
    admin(client, "patch", name, {"guardrails": {"max_fallback_rate": 0.1, "min_requests": 40}})
    record(db, eid, "control", 100, fallbacks=100)  # the control's failures never pause
    record(db, eid, "variation", 39, fallbacks=39)
    rollout.tick()
    assert client.get(f"/experiments/{name}").get_json()["status"] == "running", "below min_requests"
    record(db, eid, "variation", 61, fallbacks=0)  # 39 of 100 fell back
    rollout.tick()
    rollout.tick()  # a second look at the same breach changes nothing
    assert predict(client, name, "after-pause")["experiment_status"] == "paused"
    (pause,) = [c for c in history(client, name) if c["action"] == "guardrail_pause"]
    breach = pause["after"]["rollout"]["paused_by_guardrail"]
    assert (breach["guardrail"], breach["observed"], breach["threshold"]) == ("max_fallback_rate", 0.39, 0.1)
    (event,) = [e for e in events(rollout_app, overrides, "guardrail_breach") if e["experiment"]["name"] == name]
    assert event["guardrail"] == {"name": "max_fallback_rate", "observed": 0.39, "threshold": 0.1, "requests": 100}
    (change,) = [e["change"] for e in events(rollout_app, overrides, "experiment_change")
                 if e["experiment"]["name"] == name and e["change"]["action"] == "guardrail_pause"]
    assert change["actor"] == "guardrail" and "status: running → paused" in change["summary"]
    assert change["after"]["rollout"]["paused_by_guardrail"]["guardrail"] == "max_fallback_rate"
    assert metric(client, f'abtest_guardrail_breaches_total{{experiment="{name}",guardrail="max_fallback_rate"}}') == 1
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["status"] == "degraded"
    assert {"experiment": name, **breach} in ready.get_json()["checks"]["rollout"]["paused_by_guardrail"]
    assert results(client, name)["rollout"]["guardrails"]["paused_by_guardrail"] == breach

    admin(client, "post", f"{name}/start")
    rollout.tick()
    listed = client.get("/ready").get_json()["checks"]["rollout"]["paused_by_guardrail"]
    assert name not in [p["experiment"] for p in listed]
    assert client.get(f"/experiments/{name}").get_json()["status"] == "running", "old requests do not pause again"
    assert admin(client, "get", f"{name}/rollout")["guardrails"]["paused_by_guardrail"] is None

    from_minute = rollout.repo.state(name).guardrail_from_minute
    record(db, eid, "variation", 50, fallbacks=10, at=from_minute * 60 + 1)  # new failures after the resume
    rollout.tick()
    assert [c["action"] for c in history(client, name)].count("guardrail_pause") == 2
    admin(client, "post", f"{name}/stop")
    rollout.tick()
    assert client.get("/ready").get_json()["checks"]["rollout"]["paused_by_guardrail"] == []


# --- CLI -------------------------------------------------------------------------------

def test_the_cli_sets_and_shows_shadow_ramp_and_guardrails(monkeypatch, overrides, make_experiment, capsys):
    for key, value in overrides.items():
        monkeypatch.setenv(key, value)
    name = make_experiment()

    def run(*args: str) -> Any:
        assert cli.main(["--actor", "cli:dave", *args]) == 0
        return json.loads(capsys.readouterr().out)

    assert run("shadow", name, "forest", "10")["shadow"] == {"model": "forest", "percent": 10.0}
    ramp = run("ramp", name, "0.05:3600", "0.5:60", "1")["ramp"]
    assert ramp["steps"] == [{"allocation": 0.05, "min_seconds": 3600.0}, {"allocation": 0.5, "min_seconds": 60.0},
                             {"allocation": 1.0, "min_seconds": 0.0}]
    guarded = run("guardrails", name, '{"max_fallback_rate": 0.05, "min_requests": 200}')["guardrails"]
    assert guarded["thresholds"] == {"max_fallback_rate": 0.05, "min_requests": 200}
    shown = run("rollout", name)
    assert shown["status"] == "running" and shown["guardrails"]["paused_by_guardrail"] is None
    assert run("unshadow", name)["shadow"] is None and run("unramp", name)["ramp"] is None
    assert cli.main(["shadow", name, "nope", "10"]) == 1
    assert "unknown shadow model" in capsys.readouterr().err
    actions = [(h["action"], h["actor"]) for h in run("history", name)]
    assert actions == [("create", "test")] + [(a, "cli:dave") for a in (
        "set_shadow", "set_ramp", "set_guardrails", "clear_shadow", "clear_ramp")]


def test_rollout_state_lists_the_live_guardrail_window(client, rollout_app, db):
    name = create(rollout_app)
    eid = rollout_app.extensions["ml_api"].experiments.get(name).id
    record(db, eid, "variation", 20, fallbacks=5)
    window = admin(client, "get", f"{name}/rollout")["guardrails"]["window"]
    assert window["variation"]["requests"] == 20 and window["variation"]["max_fallback_rate"] == 0.25
    assert re.fullmatch(r"\d+(\.\d+)?", str(window["variation"]["max_p95_latency_ms"]))


def test_status_of_an_unguarded_experiment_is_never_paused_by_the_rollout(client, rollout_app, rollout, db):
    name = create(rollout_app)
    record(db, rollout_app.extensions["ml_api"].experiments.get(name).id, "variation", 500, fallbacks=500)
    rollout.tick()
    assert client.get(f"/experiments/{name}").get_json()["status"] == ExperimentStatus.RUNNING.value


def test_a_stopped_variation_loses_its_traffic_when_the_experiment_opts_in(rollout_app, rollout, db, overrides):
    """b is significantly worse, c undecided: b's weight goes to 0 through the change path (history actor
    ``verdict``), c and the control keep theirs. An experiment that did not opt in keeps every weight."""
    repo = rollout_app.extensions["ml_api"].experiments
    names = []
    for opted_in in (True, False):
        name = f"stop-{time.monotonic_ns() % 10**9}"
        repo.create(name, [VariantSpec("control", 1, "logreg"), VariantSpec("b", 1, "logreg"),
                           VariantSpec("c", 1, "logreg")], actor="test")
        repo.set_plan(name, {"stop_variations": opted_in}, "test")
        repo.set_status(name, "running", "test")
        seed(db, name, {"control": 3000, "b": 3000, "c": 3000}, {"control": 600, "b": 300, "c": 610}, hours=5)
        names.append(name)
    rollout.tick()
    rollout.tick()  # once only
    opted, other = (repo.get(n) for n in names)
    assert {v.name: v.weight for v in opted.variants} == {"control": 1, "b": 0, "c": 1}
    assert {v.name: v.weight for v in other.variants} == {"control": 1, "b": 1, "c": 1}
    changes = [(c["actor"], c["action"]) for c in repo.history(names[0])][-2:]
    assert changes == [("verdict", "verdict"), ("verdict", "stop_variation")]
    reported = sorted((e["change"]["actor"], e["change"]["action"]) for e in events(rollout_app, overrides,
                      "experiment_change") if e["experiment"]["name"] == names[0] and e["change"]["actor"] == "verdict")
    assert reported == [("verdict", "stop_variation"), ("verdict", "verdict")]
    assert [c["action"] for c in repo.history(names[1])][-1] == "start"  # judged only when the results are read
