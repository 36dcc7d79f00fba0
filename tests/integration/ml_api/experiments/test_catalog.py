"""The per-worker definitions cache: refresh on change, last known on outage, snapshot on disk."""

import dataclasses

import pytest

from ml_api.errors import DefinitionsUnavailable
from ml_api.experiments.catalog import ExperimentCatalog
from ml_api.infra.database import Database


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_change_is_seen_after_the_refresh_interval(db, repo, make_experiment, tmp_path):
    clock = FakeClock()
    catalog = ExperimentCatalog(db, 1.0, tmp_path / "defs.json", clock=clock)
    name = make_experiment((50, 50))
    assert catalog.get(name).variants[0].weight == 50
    repo.set_weights(name, {"control": 10, "variation": 90}, actor="test")
    clock.now = 0.5
    assert catalog.get(name).variants[0].weight == 50  # not due yet
    clock.now = 1.5
    assert catalog.get(name).variants[0].weight == 10


def test_mysql_away_keeps_the_last_known_and_a_new_worker_reads_the_snapshot(db, make_experiment, tmp_path):
    name = make_experiment()
    snapshot = tmp_path / "defs.json"
    clock = FakeClock()
    ExperimentCatalog(db, 1.0, snapshot, clock=clock).get(name)  # a worker that saw MySQL
    down = Database(dataclasses.replace(db.settings, port=1))
    fresh = ExperimentCatalog(down, 1.0, snapshot, clock=clock)  # a worker started during the outage
    experiment = fresh.get(name)
    assert experiment is not None and experiment.variant_names == ("control", "variation")
    assert "MySQL unavailable" in fresh.last_error


def test_no_mysql_and_no_snapshot_is_a_clear_error(db, tmp_path):
    down = Database(dataclasses.replace(db.settings, port=1))
    with pytest.raises(DefinitionsUnavailable, match="MySQL unavailable"):
        ExperimentCatalog(down, 1.0, tmp_path / "none.json").all()


def test_declared_metrics_are_refreshed_with_the_definitions_and_kept_in_the_snapshot(db, repo, make_experiment,
                                                                                     tmp_path):
    name = make_experiment(status="draft")
    snapshot = tmp_path / "defs.json"
    clock = FakeClock()
    catalog = ExperimentCatalog(db, 1.0, snapshot, clock=clock)
    assert catalog.metrics_of(catalog.get(name)).feedback_names == ["outcome"]  # the default metrics
    repo.set_metrics(name, {"primary": {"name": "revenue", "type": "mean", "mde": 1}}, actor="test")
    clock.now = 1.5
    assert catalog.metrics_of(catalog.get(name)).feedback_names == ["revenue"]
    down = Database(dataclasses.replace(db.settings, port=1))
    fresh = ExperimentCatalog(down, 1.0, snapshot, clock=clock)  # a worker started during an outage
    assert fresh.metrics_of(fresh.get(name)).feedback_names == ["revenue"]
