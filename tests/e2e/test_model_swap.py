"""Hot model swap: edit api.env, HUP gunicorn, the new model serves; no request fails."""

import shutil
import signal
import subprocess
import threading
from pathlib import Path

import joblib
import pytest
import requests
from sklearn.compose import make_column_transformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

from assigner import ExperimentStatus
from ml_api.config import PROJECT_ROOT
from ml_api.experiments.definitions import VariantSpec
from ml_api.experiments.repository import ExperimentRepository
from scripts.demo_data import churn
from tests.conftest import BOTH_WORKER_CLASSES, read_events, start_gateway
from tests.customers import customers
from tests.waiting import wait_until


IRIS = [6.1, 2.8, 4.7, 1.2]


def set_model(env_file: Path, line: str) -> None:
    lines = [l for l in env_file.read_text().splitlines() if not l.startswith("MODEL_FOREST=")]
    env_file.write_text("\n".join(lines + [line]) + "\n")


class Load:
    """Continuous /predict traffic from a few threads, recording every answer."""

    def __init__(self, url: str, experiment: str, threads: int = 3) -> None:
        self.url, self.experiment = url, experiment
        self.versions: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> "Load":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self, index: int) -> None:
        session = requests.Session()
        n = 0
        while not self._stop.is_set():
            n += 1
            body = {"user_id": f"swap-{index}-{n % 50}", "experiment": self.experiment, "features": IRIS}
            try:
                response = session.post(f"{self.url}/predict", json=body, timeout=10)
                if response.status_code == 200:
                    self.versions.append(response.json()["model"]["version"])
                else:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
            except requests.RequestException as exc:
                self.failures.append(repr(exc))

    def wait_for_version(self, version: str) -> None:
        """Wait until the last 20 answers all came from ``version``."""
        wait_until(lambda: self.versions[-20:] and set(self.versions[-20:]) == {version}, timeout=40, interval=0.2,
                   message=lambda: f"{version} never served alone; last: {self.versions[-5:]}")

    def wait_for_answers(self, count: int) -> None:
        """Wait until ``count`` more answers have come (or failed)."""
        done = len(self.versions) + len(self.failures) + count
        wait_until(lambda: len(self.versions) + len(self.failures) >= done, message=f"{count} more answers")


def degraded(gateway) -> dict | None:
    """The models check of /ready, once it reports a model whose file failed to load."""
    models = gateway.get("/ready").json()["checks"]["models"]
    return models if models["status"] == "degraded" else None


def replaced(gateway, old_workers: set[int]) -> bool:
    """True once a reload is over: the gateway's workers are all new."""
    workers = gateway.children()
    return len(workers) == gateway.workers and workers.isdisjoint(old_workers)


@pytest.fixture
def swap_setup(overrides, model_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(model_dir, models)
    bundle = joblib.load(models / "iris-forest-v1.joblib")
    bundle["metadata"] = {**bundle["metadata"], "version": "v2"}
    joblib.dump(bundle, models / "iris-forest-v2.joblib")
    (models / "broken.joblib").write_bytes(b"this is not a model")
    env_file = tmp_path / "api.env"
    env_file.write_text((PROJECT_ROOT / "api.env").read_text())
    return {**overrides, "MODEL_DIR": str(models), "API_ENV_FILE": str(env_file)}, env_file


@BOTH_WORKER_CLASSES  # a hot swap is a worker-class guarantee; the pipeline test below is about the model
def test_reload_swaps_the_model_without_failing_a_request(swap_setup, tmp_path, make_experiment):
    settings, env_file = swap_setup
    experiment = make_experiment((50, 50), models=("forest", "forest"))
    gateway = start_gateway(settings, tmp_path)
    try:
        with Load(gateway.url, experiment) as load:
            load.wait_for_version("v1")
            set_model(env_file, "MODEL_FOREST=iris-forest-v2.joblib")
            gateway.process.send_signal(signal.SIGHUP)
            load.wait_for_version("v2")

            before_reload = gateway.worker_pids()
            set_model(env_file, "MODEL_FOREST=broken.joblib")
            gateway.process.send_signal(signal.SIGHUP)
            models = wait_until(lambda: degraded(gateway), timeout=40, interval=0.3, message="/ready never degraded")
            # Under load through the whole reload: until only new workers are left, then 20 more answers (from them).
            wait_until(lambda: replaced(gateway, before_reload), message="the workers from before the reload still run")
            load.wait_for_answers(20)
        assert load.failures == [], load.failures[:5]
        forest = models["models"]["forest"]
        assert forest["version"] == "v2" and "broken.joblib" in forest["error"]
        assert set(load.versions[-20:]) == {"v2"}, "the last good model keeps serving"
        load_errors = wait_until(lambda: [e for e in read_events(Path(settings["EVENT_FILE"]))
                                          if e.get("error", {}).get("type") == "model_load_error"],
                                 message="a model_load_error event")
        assert "broken.joblib" in load_errors[0]["error"]["message"]
    finally:
        gateway.stop()


def make_reload(gateway, tmp_path: Path) -> subprocess.CompletedProcess:
    """What `make reload` runs (scripts/reload.sh), for this gateway (its pid file; no nginx of its own)."""
    return subprocess.run(["bash", "scripts/reload.sh"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**gateway.env, "PROXY_DIR": str(tmp_path / "no-nginx")}, timeout=540)


def served_file(gateway, name: str) -> str | None:
    return gateway.get("/ready").json()["checks"]["models"]["models"].get(name, {}).get("file")


def test_a_user_made_pipeline_is_served_after_one_api_env_line_and_make_reload(swap_setup, tmp_path, db,
                                                                               make_experiment):
    settings, env_file = swap_setup
    # A user's own pipeline: other columns handled otherwise, another estimator, a bare joblib file (no bundle).
    data = churn(5)
    numbers = [c for c, kind in data.feature_types.items() if kind == "number"]
    categories = [c for c, kind in data.feature_types.items() if kind == "category"]
    mine = make_pipeline(make_column_transformer((SimpleImputer(strategy="median"), numbers),
                                                 (OneHotEncoder(handle_unknown="ignore"), categories)),
                         DecisionTreeClassifier(max_depth=4, random_state=0)).fit(data.x_train, data.y_train)
    joblib.dump(mine, Path(settings["MODEL_DIR"]) / "my-churn-tree.joblib")
    iris = make_experiment((50, 50), models=("logreg", "forest"))
    gateway = start_gateway(settings, tmp_path)
    try:
        env_file.write_text(env_file.read_text() + "MODEL_MY_TREE=my-churn-tree.joblib\n")
        reloaded = make_reload(gateway, tmp_path)
        assert reloaded.returncode == 0, reloaded.stderr
        wait_until(lambda: served_file(gateway, "my_tree") == "my-churn-tree.joblib", timeout=60, interval=0.3,
                   message="/ready never showed my-churn-tree.joblib")
        mine_only = "mine-" + iris
        ExperimentRepository(db, {"churn_logreg", "my_tree"}).create(
            mine_only, [VariantSpec("control", 0, "churn_logreg"), VariantSpec("variation", 100, "my_tree")],
            actor="test", status=ExperimentStatus.RUNNING)
        people = customers(20)

        def every_answer() -> list[dict] | None:
            replies = [gateway.post("/predict", {"user_id": f"mine-{n}", "experiment": mine_only, "features": f})
                       for n, f in enumerate(people)]  # a worker may not know the experiment yet: 404
            return [r.json() for r in replies] if all(r.status_code == 200 for r in replies) else None

        answers = wait_until(every_answer, message="every worker answering for the new experiment")
        assert {a["model"]["name"] for a in answers} == {"my_tree"} and not any(a["fallback"] for a in answers)
        frame = data.x_test.iloc[:0].reindex(range(len(people)))
        for column in frame.columns:
            frame[column] = [p[column] for p in people]
        assert [a["prediction"] for a in answers] == list(mine.predict(frame.astype(data.x_train.dtypes.to_dict())))

        # A file that does not fit the experiments using its name stops the reload, with the reason.
        set_model(env_file, "MODEL_FOREST=my-churn-tree.joblib")
        refused = make_reload(gateway, tmp_path)
        assert refused.returncode == 1 and "reload: refused" in refused.stderr
        # Refused for the iris experiments using 'forest' (beside logreg, or alone against the file it replaces).
        assert "my-churn-tree.joblib takes the columns tenure (number)" in refused.stderr, refused.stderr
        assert "sepal length (cm) (number)" in refused.stderr, refused.stderr
        assert served_file(gateway, "forest") == "iris-forest-v1.joblib"
        assert gateway.post("/predict", {"user_id": "still", "experiment": iris, "features": IRIS}).status_code == 200
    finally:
        gateway.stop()
