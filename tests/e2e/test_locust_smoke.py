"""The Locust smoke profile against a real gunicorn: no failed request, no sticky violation."""

import csv
import json
import subprocess
import sys
from pathlib import Path

from ml_api.config import PROJECT_ROOT

SMOKE_CONF = PROJECT_ROOT / "loadtest" / "smoke.conf"
LOCUST_TIMEOUT_SECONDS = 40  # run-time 15 s, plus start-up and the stop timeout
MIN_PREDICTIONS = 150  # 50 users at ~1 request/s for 15 s: far fewer means the run broke
# The outcome (conversion) and a revenue mean: the load test posts both.
TWO_METRICS = {"primary": {"name": "outcome", "type": "conversion"},
               "secondary": [{"name": "revenue", "type": "mean", "cap": {"quantile": 0.99}}]}


def run_smoke(url: str, experiment: str, out: Path) -> subprocess.CompletedProcess:
    """Locust headless with the smoke profile; stats land in ``out`` as CSV and JSON."""
    command = [
        sys.executable, "-m", "locust", "--config", str(SMOKE_CONF), "--host", url,
        "--experiment", experiment, "--run-time", "15s", "--exit-code-on-error", "1",
        "--csv", str(out / "smoke"), "--json-file", str(out / "smoke"),
    ]
    return subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=LOCUST_TIMEOUT_SECONDS)


def test_smoke_profile_has_no_failures_and_no_sticky_violations(gateway, make_experiment, tmp_path):
    experiment = make_experiment((50, 50), models=("logreg", "forest"), metrics=TWO_METRICS)
    result = run_smoke(gateway.url, experiment, tmp_path)
    log = result.stderr[-3000:]

    stats = {entry["name"]: entry for entry in json.loads((tmp_path / "smoke.json").read_text())}
    with open(tmp_path / "smoke_failures.csv", newline="") as handle:
        failures = list(csv.DictReader(handle))

    assert not [f for f in failures if "sticky" in f["Error"]], failures
    assert failures == [], failures
    assert all(entry["num_failures"] == 0 for entry in stats.values()), stats
    assert stats["/predict"]["num_requests"] >= MIN_PREDICTIONS, log
    assert stats["/feedback"]["num_requests"] > 0, log
    assert stats["/feedback [revenue]"]["num_requests"] > 0, log
    assert result.returncode == 0, log
