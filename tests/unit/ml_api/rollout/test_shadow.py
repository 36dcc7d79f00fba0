"""Shadow mirroring: which users are mirrored, and a shadow model that fails or hangs costs the caller nothing."""

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from scipy.stats import binomtest, chi2_contingency

from assigner import in_traffic, traffic_bucket
from assigner.hashing import shadow_bucket
from ml_api.rollout.shadow import ShadowJob, ShadowMirror, is_mirrored
from ml_api.serving.models import LoadedModel, ModelError
from ml_api.telemetry.pseudonyms import UserPseudonyms
from ml_api.telemetry import metrics
from tests.model_doubles import FailingModel, SlowModel

SALT = "a1b2c3d4e5f60718"
USERS = [f"user-{i}" for i in range(20_000)]
IRIS = [5.1, 3.5, 1.4, 0.2]

PSEUDONYMS = UserPseudonyms("shadow-test-key-0123456789")


@pytest.mark.parametrize("salt,user_id,bucket", [
    ("a1b2c3d4e5f60718", "u-1", 4867), ("a1b2c3d4e5f60718", "user-42", 3906), ("s", "ü-ß", 3514),
])
def test_shadow_buckets_are_pinned(salt, user_id, bucket):
    """sha256("shadow:{salt}:{user}")[:8] mod 10000: a change here would mirror other users."""
    assert shadow_bucket(salt, user_id) == bucket


def test_the_same_users_are_mirrored_every_time_and_a_larger_share_only_adds_users():
    first = {u for u in USERS if is_mirrored(SALT, u, 10)}
    assert first == {u for u in USERS if is_mirrored(SALT, u, 10)}
    assert first < {u for u in USERS if is_mirrored(SALT, u, 30)}


@pytest.mark.parametrize("percent", [1, 10, 30, 75])
def test_the_mirrored_share_matches_the_percentage(percent):
    mirrored = sum(is_mirrored(SALT, u, percent) for u in USERS)
    assert binomtest(mirrored, len(USERS), percent / 100).pvalue > 0.001


def test_0_and_100_percent_are_exact():
    assert not any(is_mirrored(SALT, u, 0) for u in USERS[:2000])
    assert all(is_mirrored(SALT, u, 100) for u in USERS[:2000])


def test_mirroring_is_independent_of_the_traffic_allocation():
    """Inside and outside a 50 % allocation, the same share of users is mirrored (chi-square)."""
    table = [[0, 0], [0, 0]]
    for u in USERS:
        table[in_traffic(0.5, traffic_bucket(SALT, u))][is_mirrored(SALT, u, 30)] += 1
    assert chi2_contingency(table).pvalue > 0.001


class FakeModels:
    """A model registry of LoadedModels around test doubles; unknown names fail like the real one."""

    def __init__(self, **estimators) -> None:
        self.models = {name: LoadedModel(name, Path(f"{name}.joblib"), est) for name, est in estimators.items()}

    def get(self, name: str) -> LoadedModel:
        if name not in self.models:
            raise ModelError(f"model {name!r} is not configured in api.env")
        return self.models[name]


class Events:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict]] = []

    def emit(self, action: str, fields: dict) -> None:
        self.emitted.append((action, fields))


class RecordingDb:
    """Stands in for the Database: keeps the rows a flush writes."""

    def __init__(self) -> None:
        self.rows: list[tuple] = []

    @contextmanager
    def connection(self):
        yield self

    def cursor(self):
        return self

    def executemany(self, statement: str, rows: list[tuple]) -> None:
        assert statement.startswith("INSERT INTO shadow_predictions")
        self.rows += rows


class HangingModel(FailingModel):
    """Blocks until released, like a model waiting on a dead dependency."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def predict_proba(self, rows):
        self.release.wait(10)
        raise RuntimeError("released")


def job(shadow_model: str, request_id: str = "a" * 32) -> ShadowJob:
    return ShadowJob(request_id, 1, "exp-unit", "variation", True, "u-1", IRIS, "logreg", "setosa", shadow_model)


def skipped(reason: str) -> float:
    return metrics.SHADOW_SKIPPED.labels("exp-unit", reason)._value.get()


@pytest.mark.parametrize("model,agrees,error", [("slow", True, None), ("failing", None, "feature store unreachable"),
                                                ("missing", None, "not configured")])
def test_each_shadow_prediction_leaves_an_event_and_a_row(model, agrees, error):
    events = Events()
    mirror = ShadowMirror(FakeModels(slow=SlowModel(0.01), failing=FailingModel()), events, PSEUDONYMS)
    assert mirror.submit(job(model))
    assert mirror.wait_idle(5)
    (action, fields), = events.emitted
    assert action == "shadow_predict" and fields["shadow"]["agrees"] is agrees
    assert fields["shadow"]["served_label"] == "setosa" and fields["model"]["name"] == model
    assert (error is None) == (fields["error"]["message"] is None)
    if error:
        assert error in fields["error"]["message"] and fields["event"]["outcome"] == "failure"
    db = RecordingDb()
    assert mirror.flush(db) == 1 and mirror.flush(db) == 0
    (row,) = db.rows
    assert row[5:8] == ("setosa", model, None if error else "setosa")


def test_a_hanging_shadow_model_never_blocks_and_a_full_pool_skips_and_counts():
    hanging = HangingModel()
    mirror = ShadowMirror(FakeModels(hang=hanging), Events(), PSEUDONYMS, threads=2, queue_limit=4)
    before = skipped("pool_full")
    started = time.perf_counter()
    accepted = [mirror.submit(job("hang", f"{i:032x}")) for i in range(10)]
    assert time.perf_counter() - started < 0.5
    assert accepted == [True] * 4 + [False] * 6
    assert skipped("pool_full") - before == 6
    hanging.release.set()
    assert mirror.wait_idle(5)
    assert mirror.submit(job("hang")), "slots come back when the jobs end"
    assert mirror.wait_idle(5)
