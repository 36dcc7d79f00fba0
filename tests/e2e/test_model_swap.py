"""Hot model swap: edit api.env, HUP gunicorn, the new model serves; no request fails."""

import shutil
import signal
import threading
from pathlib import Path

import joblib
import pytest
import requests

from ml_api.config import PROJECT_ROOT
from tests.conftest import BOTH_WORKER_CLASSES, read_events, start_gateway
from tests.waiting import wait_until

pytestmark = BOTH_WORKER_CLASSES

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
