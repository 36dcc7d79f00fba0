"""Shared fixtures: real Redis and MySQL with private namespaces, models, app, gunicorn.

Every test run creates its own MySQL database (``abtest_test_<random>``) and Redis key
prefix, and removes them at the end; nothing touches the data of a running gateway.
"""

import dataclasses
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mysql.connector
import pytest
import redis
import requests

from assigner import ExperimentStatus
from ml_api import create_app
from ml_api.config import PROJECT_ROOT, WORKER_CLASSES, Config, load_config
from ml_api.experiments.definitions import VariantSpec
from ml_api.experiments.repository import ExperimentRepository
from ml_api.infra.database import Database, apply_schema
from scripts.local_redis import free_port, local_redis
from scripts.train_models import train
from tests.waiting import wait_until


TEST_USER_HASH_KEY = "test-user-hash-key-0123456789"


@pytest.fixture(scope="session")
def base_config() -> Config:
    """The settings of this machine (api.env + environment), before test overrides."""
    return load_config(os.environ)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models")
    train(path)
    return path


@contextmanager
def private_database(base_config: Config, label: str) -> Iterator[str]:
    """A fresh database ``<MYSQL_DATABASE>_<label>_<random>`` with the schema, dropped afterwards."""
    name = f"{base_config.mysql.database}_{label}_{secrets.token_hex(4)}"
    s = base_config.mysql
    admin = mysql.connector.connect(host=s.host, port=s.port, user=s.user, password=s.password, autocommit=True)
    admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    db = Database(dataclasses.replace(s, database=name))
    try:
        with db.connection() as conn:
            apply_schema(conn)
        db.close()
        yield name
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(scope="session")
def mysql_database(base_config: Config) -> Iterator[str]:
    """This run's database (the schema applied), dropped after the run."""
    with private_database(base_config, "test") as name:
        yield name


@pytest.fixture(scope="session")
def redis_client(base_config: Config) -> redis.Redis:
    return redis.Redis.from_url(base_config.redis_url)


@pytest.fixture
def redis_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    prefix = f"abtest-test-{secrets.token_hex(4)}"
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 1000):
        redis_client.delete(*keys[start:start + 1000])


def isolated_settings(database: str, redis_prefix: str, model_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Settings that point a gateway at its own database, key prefix, models and files."""
    return {
        "MYSQL_DATABASE": database,
        "REDIS_KEY_PREFIX": redis_prefix,
        "MODEL_DIR": str(model_dir),
        "SPOOL_PATH": str(tmp_path / "spool.db"),
        "DEFINITIONS_SNAPSHOT_PATH": str(tmp_path / "definitions.json"),
        "MODEL_STATE_PATH": str(tmp_path / "models-last-good.json"),
        "EVENT_FILE": str(tmp_path / "events.jsonl"),
        "EVENT_BUFFER_PATH": str(tmp_path / "event-buffer.db"),
        "LOGSTASH_HOST": "",
        "CONFIG_REFRESH_SECONDS": "0.2",
        # Never the checkout's generated secrets: a test sets the admin token it means to use.
        "LOCAL_SECRETS_FILE": str(tmp_path / "secrets.local.env"),
        "USER_HASH_KEY": TEST_USER_HASH_KEY,
    }


# The tests that hold the gateway's guarantees (faults, the model budget, fallback, hot swap,
# event shipping) run under both gunicorn worker classes: ``pytestmark = BOTH_WORKER_CLASSES``
# for a module, ``@BOTH_WORKER_CLASSES`` for a test.
BOTH_WORKER_CLASSES = pytest.mark.parametrize("worker_class", WORKER_CLASSES, indirect=True)


@pytest.fixture
def worker_class(request) -> str | None:
    """GUNICORN_WORKER_CLASS of this test's gateways: a parameter (BOTH_WORKER_CLASSES), else api.env's."""
    return getattr(request, "param", None)


@pytest.fixture
def overrides(mysql_database: str, redis_prefix: str, model_dir: Path, tmp_path: Path,
              worker_class: str | None) -> dict[str, str]:
    """This test's isolated settings."""
    settings = isolated_settings(mysql_database, redis_prefix, model_dir, tmp_path)
    return {**settings, "GUNICORN_WORKER_CLASS": worker_class} if worker_class else settings


@pytest.fixture
def config(overrides: dict[str, str]) -> Config:
    return load_config({**os.environ, **overrides})


@pytest.fixture
def db(config: Config) -> Iterator[Database]:
    database = Database(config.mysql)
    yield database
    database.close()


@pytest.fixture
def repo(db: Database, config: Config) -> ExperimentRepository:
    return ExperimentRepository(db, config.model_files)


@pytest.fixture
def make_experiment(repo: ExperimentRepository):
    """Create a running experiment with a unique name; returns its name."""

    def make(weights: tuple[float, ...] = (50, 50), models: tuple[str, ...] | None = None, **kwargs) -> str:
        name = f"exp-{secrets.token_hex(4)}"
        names = ["control", "variation"] + [f"variation-{i}" for i in range(2, len(weights))]
        models = models or ("logreg",) * len(weights)
        variants = [VariantSpec(n, w, m) for n, w, m in zip(names, weights, models)]
        repo.create(name, variants, actor="test", status=kwargs.pop("status", ExperimentStatus.RUNNING), **kwargs)
        return name

    return make


@pytest.fixture
def make_app(overrides: dict[str, str]):
    """Build apps on this test's settings plus ``extra`` ones; closed after the test."""
    apps = []

    def make(**extra: str):
        app = create_app({**overrides, **extra})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["ml_api"].stop()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


def read_events(path: Path) -> list[dict]:
    """The events written to an EVENT_FILE so far.

    Workers append whole lines; a last line still without its newline is being written and
    is left for the next read."""
    if not path.exists():
        return []
    complete, _, _ = path.read_bytes().rpartition(b"\n")
    return [json.loads(line) for line in complete.splitlines()]


def request_id(event: dict) -> str | None:
    """The id of the request an event is about (model load errors are about none)."""
    return event.get("http", {}).get("request", {}).get("id")


MARKER_FEATURES = [5.8, 2.7, 5.1, 1.9]


@dataclass
class Gateway:
    """A real gunicorn process serving the app on a free loopback port."""

    url: str
    process: subprocess.Popen
    env: dict[str, str]
    log_path: Path
    workers: int
    session: requests.Session = field(default_factory=requests.Session)
    _marker_numbers: Iterator[int] = field(default_factory=itertools.count, init=False, repr=False)

    def post(self, path: str, body: dict, **kwargs) -> requests.Response:
        return self.session.post(self.url + path, json=body, timeout=10, **kwargs)

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.url + path, timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def children(self) -> set[int]:
        """The arbiter's child processes right now (during a reload, old and new workers)."""
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):  # read from /proc: no procps tool needed
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # after "(comm)": state, ppid
            except (OSError, IndexError, ValueError):
                continue  # the process ended meanwhile
            if parent == self.process.pid:
                children.add(int(stat.parent.name))
        return children

    def worker_pids(self) -> set[int]:
        """The worker processes, once all have started (/health answers as soon as the first one does)."""

        def all_running() -> set[int] | None:
            pids = self.children()
            return pids if len(pids) == self.workers else None

        return wait_until(all_running, message=f"{self.workers} gunicorn workers running")

    def wait_for_empty_spool(self, timeout: float = 30) -> None:
        """Wait until every spooled record is in MySQL (all workers share one spool file)."""
        wait_until(lambda: self.get("/ready").json()["checks"]["mysql"]["spooled_records"] == 0,
                   timeout=timeout, interval=0.2, message="spooled records still waiting for MySQL")

    def reach_every_worker(self, experiment: str, action: str, events: Callable[[], list[dict]] | None = None,
                           timeout: float = 30) -> set[str]:
        """Send marker requests (/predict for ``experiment``) on new connections, so that any worker
        may take each one, until every worker has emitted an ``action`` event for one of them.

        Such an event proves that its worker got past whatever came before the marker (which
        depends on the event and the experiment: see the callers). ``events`` reads the events
        so far, by default from this gateway's EVENT_FILE. Returns the answered markers' request ids."""
        workers = self.worker_pids()
        events = events or (lambda: read_events(Path(self.env["EVENT_FILE"])))
        markers: set[str] = set()

        def every_worker_emitted() -> bool:
            for _ in range(3 * len(workers)):
                body = {"user_id": f"marker-{next(self._marker_numbers)}", "experiment": experiment,
                        "features": MARKER_FEATURES}
                response = requests.post(f"{self.url}/predict", json=body, headers={"Connection": "close"}, timeout=10)
                if response.status_code == 200:  # else this worker does not know the experiment yet
                    markers.add(response.json()["request_id"])
            return workers <= {e["process"]["pid"] for e in events()
                               if e["event"]["action"] == action and request_id(e) in markers}

        wait_until(every_worker_emitted, timeout=timeout, interval=0.2,
                   message=f"a {action} event for a marker request from each of the workers {sorted(workers)}")
        return markers


def start_gateway(overrides: dict[str, str], tmp_path: Path, workers: int = 2, timeout: float = 90) -> Gateway:
    """gunicorn on a free port; ``timeout`` is a deadline for its first answer (a worker importing
    scikit-learn and pandas on a loaded 2-core machine takes tens of seconds)."""
    port = free_port()
    env = {
        **os.environ,
        **overrides,
        "GUNICORN_BIND": f"127.0.0.1:{port}",  # gunicorn itself: the tests that want nginx start their own
        "GUNICORN_WORKERS": str(workers),
        "GUNICORN_PIDFILE": str(tmp_path / "gunicorn.pid"),
        "METRICS_DIR": str(tmp_path / "prometheus"),
        "PYTHONPATH": str(PROJECT_ROOT),
    }
    log_path = tmp_path / "gunicorn.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "ml_api/gunicorn.conf.py", "ml_api:create_app()"],
        cwd=PROJECT_ROOT, env=env, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
    )
    gateway = Gateway(url=f"http://127.0.0.1:{port}", process=process, env=env, log_path=log_path, workers=workers)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log_path.read_text()[-2000:]}")
        try:
            if gateway.get("/health").status_code == 200:
                return gateway
        except requests.ConnectionError:
            time.sleep(0.1)
    gateway.stop()
    raise RuntimeError(f"gunicorn did not answer in time: {log_path.read_text()[-2000:]}")


@pytest.fixture
def gateway(overrides: dict[str, str], tmp_path: Path) -> Iterator[Gateway]:
    gw = start_gateway(overrides, tmp_path)
    yield gw
    gw.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test alone on a free port (so the test may stop it)."""
    with local_redis(tmp_path) as url:
        yield url
