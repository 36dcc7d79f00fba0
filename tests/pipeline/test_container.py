"""The gateway image: its start-up script waits for MySQL, trains missing models, then execs gunicorn."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .project import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
SH = shutil.which("sh")
needs_sh = pytest.mark.skipif(SH is None, reason="no POSIX sh to run the start-up script")


def start_script() -> str:
    """The start-gateway script embedded in the Dockerfile as a heredoc."""
    match = re.search(r"<<'SCRIPT' /usr/local/bin/start-gateway\n(.*?)\nSCRIPT\n", DOCKERFILE, re.DOTALL)
    assert match, "start-gateway heredoc not found"
    return match.group(1) + "\n"


def test_image_is_a_pinned_python_311_slim_with_the_pinned_requirements() -> None:
    (base,) = re.findall(r"^FROM (\S+)", DOCKERFILE, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", base), f"{base}: a patch release and a Debian release"
    assert "pip install -r requirements.txt" in DOCKERFILE
    assert re.search(r'^CMD \["start-gateway"\]$', DOCKERFILE, re.MULTILINE)


def test_dockerignore_keeps_what_the_image_runs() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for needed in ("ml_api", "kibana", "logstash", "mysql", "scripts", "requirements.txt", "api.env"):
        assert needed not in ignored


@pytest.fixture()
def sandbox(tmp_path: Path) -> Path:
    """A work dir with stub python/gunicorn/sleep that log their arguments."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "models").mkdir()
    stub = '#!/bin/sh\necho "$(basename "$0") $*" >> "$CALLS"\n'
    python = stub + (
        'if [ "$1 $2 $3" = "-m ml_api.cli init-db" ]; then\n'
        '  n=$(grep -c "ml_api.cli init-db" "$CALLS")\n'
        '  [ "$n" -gt "${INIT_FAILURES:-0}" ] || exit 1\n'
        "fi\n"
        # The settings as the gateway reads them from API_ENV_FILE (here: a file of the sandbox).
        'if [ "$1 $2 $3" = "-m ml_api.cli shell-env" ]; then cat "$API_ENV_FILE"; fi\n'
        'if [ "$1" = scripts/train_models.py ]; then [ -z "${TRAIN_FAILS:-}" ] || exit 1; fi\n'
    )
    for name, body in {"python": python, "gunicorn": stub, "sleep": stub}.items():
        path = tmp_path / "bin" / name
        path.write_text(body)
        path.chmod(0o755)
    (tmp_path / "start-gateway").write_text(start_script())
    return tmp_path


def run_start(sandbox: Path, **env: str) -> tuple[int, list[str], str]:
    """Run start-gateway in the sandbox; its exit status, the stub calls in order and what it printed to stderr.

    The models come from the settings file (API_ENV_FILE), not the environment: in compose the
    api container has no env_file, and reads the mounted api.env."""
    calls = sandbox / "calls"
    (sandbox / "api.env").write_text("MODEL_DIR=models\nMODEL_TIMEOUT_MS=500\nMODEL_LOGREG=iris-logreg-v1.joblib\n"
                                     "MODEL_OWN='my model.joblib'\n")
    (sandbox / "models" / "my model.joblib").write_bytes(b"model")
    environment = {
        "PATH": f"{sandbox / 'bin'}:{os.environ['PATH']}",
        "CALLS": str(calls),
        "API_ENV_FILE": str(sandbox / "api.env"),
        **env,
    }
    result = subprocess.run([SH, "start-gateway"], cwd=sandbox, env=environment, capture_output=True, timeout=10)
    return result.returncode, calls.read_text().splitlines() if calls.exists() else [], result.stderr.decode()


@needs_sh
def test_script_parses() -> None:
    subprocess.run([SH, "-n", "-c", start_script()], check=True)


@needs_sh
def test_waits_for_mysql_trains_missing_models_then_serves(sandbox: Path) -> None:
    status, calls, _ = run_start(sandbox, INIT_FAILURES="2")
    assert status == 0
    assert calls == [
        "python -m ml_api.cli init-db", "sleep 2",
        "python -m ml_api.cli init-db", "sleep 2",
        "python -m ml_api.cli init-db",
        "python -m ml_api.cli shell-env",
        "python scripts/train_models.py --if-missing --out-dir models",
        "python -m scripts.local_secrets",
        "gunicorn -c ml_api/gunicorn.conf.py ml_api:create_app()",
    ]


@needs_sh
def test_models_on_disk_are_not_retrained(sandbox: Path) -> None:
    (sandbox / "models" / "iris-logreg-v1.joblib").write_bytes(b"model")
    status, calls, _ = run_start(sandbox)
    assert status == 0
    assert not any(call.startswith("python scripts/train_models.py") for call in calls)


@needs_sh
def test_a_model_that_cannot_be_trained_stops_the_start_with_the_reason(sandbox: Path) -> None:
    status, calls, stderr = run_start(sandbox, TRAIN_FAILS="1")
    assert status == 1
    assert not any(call.startswith("gunicorn") for call in calls)
    assert "could not train the missing models into models" in stderr


@needs_sh
def test_gives_up_when_mysql_never_comes(sandbox: Path) -> None:
    status, calls, _ = run_start(sandbox, INIT_FAILURES="99", DB_INIT_ATTEMPTS="3")
    assert status == 1
    assert calls.count("python -m ml_api.cli init-db") == 3
    assert not any(call.startswith("gunicorn") for call in calls)
