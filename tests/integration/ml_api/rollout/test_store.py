"""The rollout row's hooks in an experiment's change: a (re)start lets the guardrails judge from that moment on."""

import time

from assigner import ExperimentStatus
from tests.integration.ml_api.rollout.test_engine import record

GUARDRAILS = {"max_fallback_rate": 0.1, "min_requests": 50}


def status(repo, name: str) -> ExperimentStatus:
    return repo.get(name).status


def test_after_a_resume_the_guardrails_judge_the_requests_since_the_resume(make_app, make_experiment, repo, db):
    """Not from the next minute on: the second pause comes with the min_requests-th failure after the resume."""
    rollout = make_app().extensions["ml_api"].rollout
    name = make_experiment(weights=(0, 100))
    repo.set_guardrails(name, GUARDRAILS, "test")
    experiment_id = repo.get(name).id
    record(db, experiment_id, "variation", 60, fallbacks=60)
    rollout.tick()
    assert status(repo, name) is ExperimentStatus.PAUSED

    repo.set_status(name, "running", "test")  # the 60 failures before it do not count again
    rollout.tick()
    assert status(repo, name) is ExperimentStatus.RUNNING
    record(db, experiment_id, "variation", GUARDRAILS["min_requests"] - 1, fallbacks=GUARDRAILS["min_requests"] - 1)
    rollout.tick()
    assert status(repo, name) is ExperimentStatus.RUNNING, "below min_requests since the resume"
    started = time.time()
    record(db, experiment_id, "variation", 1, fallbacks=1)
    rollout.tick()
    assert status(repo, name) is ExperimentStatus.PAUSED, "the min_requests-th failure since the resume pauses"
    assert time.time() - started < 60, "within seconds, whatever the minute"
    actions = [change["action"] for change in repo.history(name)]
    assert actions[-4:] == ["set_guardrails", "guardrail_pause", "start", "guardrail_pause"]


def test_a_start_takes_a_baseline_of_its_minute_and_the_window_subtracts_it(make_app, make_experiment, repo, db):
    rollout = make_app().extensions["ml_api"].rollout
    name = make_experiment(status=ExperimentStatus.PAUSED)
    repo.set_guardrails(name, GUARDRAILS, "test")
    experiment_id = repo.get(name).id
    record(db, experiment_id, "variation", 30, fallbacks=3)  # served while it ran, before someone paused it
    repo.set_status(name, "running", "test")
    state = rollout.repo.state(name)
    assert int(time.time() // 60) - state.guardrail_from_minute in (0, 1), "the window starts with the start's minute"
    assert rollout.repo.window(experiment_id, state.guardrail_from_minute) == {}, "nothing served since the start"
    record(db, experiment_id, "variation", 20, fallbacks=2)
    window = rollout.repo.window(experiment_id, state.guardrail_from_minute)
    assert (window["variation"].requests, window["variation"].fallbacks) == (20, 2)
