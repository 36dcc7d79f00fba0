"""Experiment definitions and their append-only history in a real MySQL."""

import pytest

from assigner import ExperimentStatus
from ml_api.errors import InvalidDefinition
from ml_api.experiments.definitions import VariantSpec


def test_create_and_read_back(repo, make_experiment):
    name = make_experiment((70, 30), models=("logreg", "forest"), traffic_allocation=0.5)
    experiment = repo.get(name)
    assert [(v.name, v.weight, v.model) for v in experiment.variants] == [
        ("control", 70.0, "logreg"), ("variation", 30.0, "forest")]
    assert experiment.traffic_allocation == 0.5
    assert experiment.default_variant == "control"
    assert experiment.status is ExperimentStatus.RUNNING


def test_every_change_is_in_the_history(repo, make_experiment):
    name = make_experiment()
    repo.set_weights(name, {"control": 20, "variation": 80}, actor="alice")
    repo.set_traffic_allocation(name, 0.3, actor="bob")
    repo.force_variant(name, "qa-1", "variation", actor="carol")
    repo.set_status(name, "paused", actor="dave")
    history = repo.history(name)
    assert [(h["action"], h["actor"]) for h in history] == [
        ("create", "test"), ("set_weights", "alice"), ("set_traffic_allocation", "bob"),
        ("force_variant", "carol"), ("pause", "dave")]
    weights = history[1]
    assert [v["weight"] for v in weights["before"]["variants"]] == [50, 50]
    assert [v["weight"] for v in weights["after"]["variants"]] == [20, 80]
    assert history[3]["after"]["overrides"] == {"qa-1": "variation"}


@pytest.mark.parametrize("change,message", [
    (lambda r, n: r.set_weights(n, {"control": 1}, "t"), "exactly these variants"),
    (lambda r, n: r.set_weights(n, {"control": -1, "variation": 2}, "t"), "from 0 to 10000"),
    (lambda r, n: r.set_weights(n, {"control": 1e6, "variation": 2}, "t"), "from 0 to 10000"),
    (lambda r, n: r.set_weights(n, {"control": 0.00001, "variation": 0}, "t"), "more than zero"),
    (lambda r, n: r.set_weights(n, {"control": 0, "variation": 0}, "t"), "more than zero"),
    (lambda r, n: r.set_traffic_allocation(n, 1.5, "t"), "between 0 and 1"),
    (lambda r, n: r.set_status(n, "running-ish", "t"), "status must be one of"),
    (lambda r, n: r.force_variant(n, "u", "nope", "t"), "unknown variant"),
])
def test_invalid_changes_are_refused_and_not_recorded(repo, make_experiment, change, message):
    name = make_experiment()
    with pytest.raises(InvalidDefinition, match=message):
        change(repo, name)
    assert [h["action"] for h in repo.history(name)] == ["create"]


def test_unknown_model_and_duplicate_names_are_refused(repo, make_experiment):
    with pytest.raises(InvalidDefinition, match="unknown model"):
        repo.create("bad-model", [VariantSpec("a", 1, "logreg"), VariantSpec("b", 1, "../../etc/passwd")], actor="t")
    name = make_experiment()
    with pytest.raises(InvalidDefinition, match="already exists"):
        repo.create(name, [VariantSpec("a", 1, "logreg"), VariantSpec("b", 1, "logreg")], actor="t")


def test_a_stopped_experiment_stays_stopped(repo, make_experiment):
    name = make_experiment()
    repo.set_status(name, "stopped", actor="t")
    with pytest.raises(InvalidDefinition, match="stopped"):
        repo.set_status(name, "running", actor="t")
