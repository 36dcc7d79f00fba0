"""Exposures and outcomes in a real MySQL, and the spool that covers MySQL outages."""

import dataclasses
import threading
import uuid

import pytest

from assigner import AssignmentSource
from ml_api.experiments.records import Recorder
from ml_api.infra.database import Database
from ml_api.infra.spool import Spool


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool.db")


@pytest.fixture
def recorder(db, spool):
    return Recorder(db, spool)


@pytest.fixture
def experiment(repo, make_experiment):
    return repo.get(make_experiment())


def test_first_exposure_wins(recorder, experiment):
    assert recorder.record_first(experiment, "u1", "control") == ("control", AssignmentSource.NEW)
    assert recorder.record_first(experiment, "u1", "variation") == ("control", AssignmentSource.MYSQL)
    assert recorder.find_assignment(experiment.id, "u1") == "control"
    assert recorder.find_assignment(experiment.id, "nobody") is None


def test_concurrent_first_exposures_agree(db, spool, experiment):
    results = []

    def record(variant):
        own = Database(db.settings)  # a connection per thread, as in separate workers
        results.append(Recorder(own, spool).record_first(experiment, "racer", variant))
        own.close()

    threads = [threading.Thread(target=record, args=(v,)) for v in ["control", "variation"] * 5]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({variant for variant, _ in results}) == 1
    assert sorted(source.value for _, source in results) == ["mysql"] * 9 + ["new"]


def test_mysql_down_spools_then_delivers_once(db, spool, experiment):
    down = Recorder(Database(dataclasses.replace(db.settings, port=1)), spool)
    assert down.record_first(experiment, "u-down", "variation") == ("variation", AssignmentSource.HASH)
    feedback_id = uuid.uuid4().hex
    outcome = {"feedback_id": feedback_id, "experiment_id": experiment.id, "user_id": "u-down",
               "variant": "variation", "request_id": None, "value": 1.0}
    assert down.record_outcome(outcome) is False
    assert spool.size() == 2

    up = Recorder(db, spool)
    assert spool.drain(up.write_spooled) == 2
    assert spool.size() == 0
    assert up.find_assignment(experiment.id, "u-down") == "variation"
    # A replayed batch (a crash after the MySQL commit, before the spool delete) changes nothing.
    down.record_outcome(outcome)
    spool.drain(up.write_spooled)
    assert up.variant_counts(experiment.id) == {"variation": {"users": 1, "outcomes": 1}}


def test_failed_delivery_keeps_the_batch(db, spool, experiment):
    down = Recorder(Database(dataclasses.replace(db.settings, port=1)), spool)
    down.record_first(experiment, "u-kept", "control")
    with pytest.raises(Exception):
        spool.drain(down.write_spooled)
    assert spool.size() == 1


def test_a_guess_spooled_by_several_requests_is_one_exposure(db, spool, experiment):
    """Each request of a guessed user spools it while MySQL is away (assigner rule 8): the one
    that claimed the guess may have died before spooling. Replayed, they are one row."""
    down = Recorder(Database(dataclasses.replace(db.settings, port=1)), spool)
    for _ in range(3):
        assert down.record_first(experiment, "u-again", "control") == ("control", AssignmentSource.HASH)
    assert spool.size() == 3
    up = Recorder(db, spool)
    assert spool.drain(up.write_spooled) == 3
    assert up.find_assignment(experiment.id, "u-again") == "control"
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM assignments WHERE experiment_id = %s AND user_id = %s",
                       (experiment.id, "u-again"))
        assert cursor.fetchone()[0] == 1
