"""Hot model swap: edit api.env, HUP gunicorn, the new model serves; no request fails."""

import json
import shutil
import signal
import threading
import time
from pathlib import Path

import joblib
import pytest
import requests

from ml_api.config import PROJECT_ROOT
from tests.conftest import start_gateway

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

    def wait_for_version(self, version: str, timeout: float = 40) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.versions[-20:] and set(self.versions[-20:]) == {version}:
                return True
            time.sleep(0.2)
        return False


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
            assert load.wait_for_version("v1")
            set_model(env_file, "MODEL_FOREST=iris-forest-v2.joblib")
            gateway.process.send_signal(signal.SIGHUP)
            assert load.wait_for_version("v2"), f"v2 never served; last: {load.versions[-5:]}"

            set_model(env_file, "MODEL_FOREST=broken.joblib")
            gateway.process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                models = gateway.get("/ready").json()["checks"]["models"]
                if models["status"] == "degraded":
                    break
                time.sleep(0.3)
            time.sleep(1)
        assert load.failures == [], load.failures[:5]
        assert models["status"] == "degraded", models
        forest = models["models"]["forest"]
        assert forest["version"] == "v2" and "broken.joblib" in forest["error"]
        assert set(load.versions[-20:]) == {"v2"}, "the last good model keeps serving"
        events = [json.loads(line) for line in Path(settings["EVENT_FILE"]).read_text().splitlines()]
        load_errors = [e for e in events if e.get("error", {}).get("type") == "model_load_error"]
        assert load_errors and "broken.joblib" in load_errors[0]["error"]["message"]
    finally:
        gateway.stop()
