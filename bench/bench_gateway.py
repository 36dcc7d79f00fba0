"""The gateway's POST /predict against a bare Flask baseline, under the same fixed load.

    make bench        # or: python bench/bench_gateway.py [--duration 5] [--rounds 5] [--connections 1 24 32]

For each demo model (LogisticRegression, RandomForest) it creates a private MySQL
database, Redis key prefix and experiment whose variants all use that model, serves it
with the gateway (``ml_api``) and with ``bench/baseline_app.py`` under the same gunicorn
settings, drives both with wrk at each concurrency level (users drawn from a fixed
population, warmed up first, so the steady state is a sticky-cache hit), prints
requests/s, p50 and p99 (medians of interleaved rounds) and the gateway/baseline ratio,
then what each step of a request costs in-process. Everything it created is removed at the end. Not a test:
figures depend on the machine and on whatever else runs on it.
"""

import argparse
import itertools
import json
import logging
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import mysql.connector
import redis
import requests
from werkzeug.test import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/<script>.py`

from assigner import (  # noqa: E402
    Assignment,
    AssignmentSource,
    ExperimentStatus,
    RedisAssignmentStore,
)
from assigner.memory import StickyMemory  # noqa: E402
from assigner.sharded_store import ShardedRedisAssignmentStore  # noqa: E402
from bench.baseline_app import create_app as create_baseline  # noqa: E402
from ml_api import create_app  # noqa: E402
from ml_api.config import PROJECT_ROOT, UNIX_PREFIX, Config, load_config  # noqa: E402
from ml_api.experiments.definitions import VariantSpec  # noqa: E402
from ml_api.experiments.repository import ExperimentRepository  # noqa: E402
from ml_api.infra.database import Database, apply_schema  # noqa: E402
from ml_api.serving.models import load_model  # noqa: E402
from ml_api.serving.predict import observe  # noqa: E402
from ml_api.serving.requests import parse_predict  # noqa: E402
from ml_api.telemetry import event_kinds  # noqa: E402
from ml_api.telemetry.metrics import SAMPLES  # noqa: E402
from scripts.local_redis import free_port  # noqa: E402
from scripts.serve import listening  # noqa: E402

MODELS = {"logreg": "LogisticRegression", "forest": "RandomForest"}
FEATURES = [5.9, 3.0, 5.1, 1.8]
# The named-feature pipeline measured beside the list form: imputation, scaling, one-hot, LogisticRegression.
NAMED_MODEL = "churn_logreg"
CUSTOMER = {"tenure": 1, "MonthlyCharges": 85.0, "TotalCharges": 85.0, "SeniorCitizen": 0,
            "Contract": "Month-to-month", "InternetService": "Fiber optic", "PaymentMethod": "Electronic check",
            "PaperlessBilling": "Yes"}
BATCH_ROWS = 1000
POPULATION = 1_000
WARMUP_SECONDS = 3
START_SECONDS = 90  # a loaded machine takes a while to import the app in a new gunicorn
TARGET_RATIO = 0.85
TARGET_ADDED_P50_MS = 1.0
TARGET_P99_MS = 10.0
TARGET_P99_CONNECTIONS = 32
WORKER_CLASS_ROUNDS = 3  # the worker-class comparison runs 8 servers' worth of wrk runs per round

# wrk runs this per request: users cycle through a fixed population (steady state: every
# user is known), and done() prints one machine-readable line. With a positive
# MEAN_PAUSE_MS each connection waits a random (exponential) pause before each request,
# so the offered load is fixed instead of "as fast as the server answers".
WRK_SCRIPT = """
local counter = 0
local mean_pause_ms = MEAN_PAUSE_MS
if mean_pause_ms > 0 then
    delay = function()
        return -mean_pause_ms * math.log(1 - math.random())
    end
end
request = function()
    counter = counter + 1
    local body = string.format('{"user_id":"bench-%d","experiment":"EXPERIMENT","features":FEATURES}',
                               counter % POPULATION)
    return wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, body)
end
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format('WRK {"requests":%d,"seconds":%f,"p50_ms":%f,"p99_ms":%f,"errors":%d,"non2xx":%d}\\n',
        summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
        e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass(frozen=True)
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # CPU time of the server's worker processes per request


@dataclass(frozen=True)
class Profile:
    """A load: ``connections`` as fast as answered (closed loop), or paced to ``rate`` requests/s in all."""

    connections: int
    rate: float | None = None

    @property
    def mean_pause_ms(self) -> float:
        return 0.0 if self.rate is None else self.connections / self.rate * 1000

    def __str__(self) -> str:
        return f"{self.connections} conns" + ("" if self.rate is None else f" paced to {self.rate:.0f} r/s")


Figures = dict[Profile, tuple[Load, Load]]  # (baseline, gateway) per load profile


@dataclass(frozen=True)
class Server:
    url: str
    pidfile: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time of the gunicorn master's worker processes so far."""
        master = self.pidfile.read_text().strip()
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        total = 0
        for pid in children:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
        return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Stack:
    """A private database, Redis prefix and scratch directory, plus one experiment per model."""

    config: Config
    overrides: dict[str, str]
    experiments: dict[str, str]
    workdir: Path


@contextmanager
def private_stack(base: Config) -> Iterator[Stack]:
    """Everything the gateway writes goes here, and is removed afterwards."""
    token = secrets.token_hex(4)
    database, prefix = f"{base.mysql.database}_bench_{token}", f"abtest-bench-{token}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    s = base.mysql
    admin = mysql.connector.connect(host=s.host, port=s.port, user=s.user, password=s.password, autocommit=True)
    admin.cursor().execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    overrides = {
        "MYSQL_DATABASE": database,
        "REDIS_KEY_PREFIX": prefix,
        "SPOOL_PATH": str(workdir / "spool.db"),
        "EVENT_FILE": str(workdir / "events.jsonl"),
        "EVENT_BUFFER_PATH": str(workdir / "event-buffer.db"),
        "LOGSTASH_HOST": "",
        "USER_HASH_KEY": secrets.token_hex(16),
    }
    try:
        config = load_config({**os.environ, **overrides})
        db = Database(config.mysql)
        with db.connection() as conn:
            apply_schema(conn)
        repo = ExperimentRepository(db, config.model_files)
        experiments = {}
        for model in (*MODELS, NAMED_MODEL):
            name = f"bench-{model}"
            variants = [VariantSpec("control", 50, model), VariantSpec("variation", 50, model)]
            repo.create(name, variants, actor="bench", status=ExperimentStatus.RUNNING)
            experiments[model] = name
        yield Stack(config, overrides, experiments, workdir)
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()
        client = redis.Redis.from_url(base.redis_url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def gunicorn(app_spec: str, overrides: dict[str, str], workdir: Path, label: str,
             bind: str | None = None) -> Iterator[Server]:
    """``app_spec`` served with ml_api/gunicorn.conf.py on ``bind`` (a unix socket for nginx), else a free port."""
    bind = bind or f"127.0.0.1:{free_port()}"
    env = {**os.environ, **overrides, "GUNICORN_BIND": bind,
           "GUNICORN_PIDFILE": str(workdir / f"{label}.pid"), "PYTHONPATH": str(PROJECT_ROOT)}
    log_path = workdir / f"{label}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "-c", "ml_api/gunicorn.conf.py", app_spec],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    url = f"http://{bind}"
    ready = partial(listening, bind) if bind.startswith(UNIX_PREFIX) else partial(healthy, url)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{label} did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield Server(url, workdir / f"{label}.pid")
    finally:
        process.terminate()
        process.wait(timeout=30)


def healthy(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


def balanced_worker_connections(config: Config, connections: int) -> int:
    """A per-worker connection cap that spreads ``connections`` over every worker.

    wrk opens all its connections at once, and whichever worker wakes first accepts them:
    often one worker gets all 32 and the other idles, which halves requests/s and says
    nothing about the app. With this cap each worker holds at most its share plus one per
    thread (fewer would turn keep-alive off), so at any level of at least cap + threads
    connections every worker has enough to keep its threads busy."""
    return -(-connections // config.gunicorn_workers) + config.gunicorn_threads


def wrk(server: Server, script: Path, connections: int, seconds: int) -> Load:
    """One fixed-concurrency wrk run (one wrk thread: the cores are for the servers)."""
    cpu_before = server.cpu_seconds()
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script),
         server.url + "/predict"],
        capture_output=True, text=True, timeout=seconds + 30, check=True,
    )
    cpu = server.cpu_seconds() - cpu_before
    line = next(line for line in result.stdout.splitlines() if line.startswith("WRK "))
    stats = json.loads(line[4:])
    if stats["errors"] or stats["non2xx"]:
        raise RuntimeError(f"wrk saw failures against {server.url}: {stats}")
    return Load(stats["requests"] / stats["seconds"], stats["p50_ms"], stats["p99_ms"],
                cpu / max(stats["requests"], 1) * 1e6)


def visit_everyone(url: str, experiment: str, features: Any = FEATURES) -> None:
    """One request per user of the population, so the measured runs are all repeat visits."""
    def visit(users: range) -> None:
        with requests.Session() as session:
            for n in users:
                body = {"user_id": f"bench-{n}", "experiment": experiment, "features": features}
                session.post(url + "/predict", json=body, timeout=10).raise_for_status()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(visit, [range(start, POPULATION, 8) for start in range(8)]))


def write_wrk_script(stack: Stack, model: str, profile: Profile, features: Any = FEATURES) -> Path:
    path = stack.workdir / f"wrk-{model}-{profile.connections}-{profile.rate or 0:.0f}.lua"
    path.write_text(
        WRK_SCRIPT.replace("EXPERIMENT", stack.experiments[model])
        .replace("FEATURES", json.dumps(features, separators=(",", ":")))
        .replace("POPULATION", str(POPULATION))
        .replace("MEAN_PAUSE_MS", repr(profile.mean_pause_ms))
    )
    return path


def bench_model(stack: Stack, model: str, profiles: list[Profile], seconds: int, rounds: int) -> Figures:
    """(baseline, gateway) figures per load profile for one model: medians over rounds."""
    scripts = {profile: write_wrk_script(stack, model, profile) for profile in profiles}
    with ExitStack() as servers:
        gateway = servers.enter_context(gunicorn("ml_api:create_app()", stack.overrides, stack.workdir, "gateway"))
        baseline = servers.enter_context(
            gunicorn(f'bench.baseline_app:create_app("{model}")', stack.overrides, stack.workdir, "baseline")
        )
        visit_everyone(gateway.url, stack.experiments[model])  # first visits write to MySQL: not measured
        for server in (gateway, baseline):  # connection pools, model, definitions
            wrk(server, scripts[profiles[0]], 8, WARMUP_SECONDS)
        runs: dict[Profile, tuple[list[Load], list[Load]]] = {profile: ([], []) for profile in profiles}
        for round_ in range(rounds):  # interleaved, order alternating: drift hits both alike
            for profile in profiles:
                for index in (0, 1) if round_ % 2 == 0 else (1, 0):
                    server = (baseline, gateway)[index]
                    runs[profile][index].append(wrk(server, scripts[profile], profile.connections, seconds))
    return {profile: (median_load(base), median_load(gw)) for profile, (base, gw) in runs.items()}


def median_load(loads: list[Load]) -> Load:
    return Load(*(statistics.median(values) for values in zip(*((x.rps, x.p50_ms, x.p99_ms, x.cpu_us) for x in loads))))


def print_load_table(results: dict[str, Figures]) -> None:
    print("\nPOST /predict, wrk, steady state (repeat visitors)")
    print(f"{'model':<20}{'load':>24}{'baseline r/s':>14}{'p50':>7}{'p99':>7}{'cpu':>6}"
          f"{'gateway r/s':>13}{'p50':>7}{'p99':>7}{'cpu':>6}{'ratio':>7}{'+p50':>7}{'+cpu':>6}")
    for model, figures in results.items():
        for profile, (base, gw) in figures.items():
            print(f"{MODELS[model]:<20}{str(profile):>24}{base.rps:>14.0f}{base.p50_ms:>7.2f}{base.p99_ms:>7.2f}"
                  f"{base.cpu_us:>6.0f}{gw.rps:>13.0f}{gw.p50_ms:>7.2f}{gw.p99_ms:>7.2f}{gw.cpu_us:>6.0f}"
                  f"{gw.rps / base.rps:>7.2f}{gw.p50_ms - base.p50_ms:>7.2f}{gw.cpu_us - base.cpu_us:>6.0f}")
    print("(latencies in ms; cpu = microseconds of worker CPU per request; ratio = gateway/baseline requests/s)")


def print_targets(results: dict[str, Figures]) -> None:
    """Throughput at every closed-loop level, and as CPU capacity; added p50 unloaded; p99 at 32 connections."""
    checks = []
    logreg = results.get("logreg", {})
    closed = {p: f for p, f in logreg.items() if p.rate is None}
    for profile, (base, gw) in closed.items():
        checks.append((f"LogisticRegression, {profile}: throughput >= {TARGET_RATIO:.0%} of baseline",
                       gw.rps / base.rps >= TARGET_RATIO, f"{gw.rps / base.rps:.0%}"))
    if closed:
        # Saturated, requests/s = cores / CPU per request; unlike requests/s, CPU per request
        # does not depend on how gunicorn happened to spread wrk's connections over workers.
        busiest = max(closed, key=lambda p: p.connections)
        base, gw = closed[busiest]
        checks.append((f"LogisticRegression, {busiest}: capacity (baseline CPU / gateway CPU per request)"
                       f" >= {TARGET_RATIO:.0%}", base.cpu_us / gw.cpu_us >= TARGET_RATIO,
                       f"{base.cpu_us / gw.cpu_us:.0%}"))
        # In a closed loop a saturated server's p50 is connections / throughput; only an
        # unsaturated level shows the latency the gateway's own work adds.
        quietest = min(closed, key=lambda p: p.connections)
        base, gw = closed[quietest]
        checks.append((f"LogisticRegression, {quietest}: added p50 < {TARGET_ADDED_P50_MS} ms",
                       gw.p50_ms - base.p50_ms < TARGET_ADDED_P50_MS, f"{gw.p50_ms - base.p50_ms:+.2f} ms"))
    for model, figures in results.items():
        for profile, (base, gw) in figures.items():
            if profile.connections == TARGET_P99_CONNECTIONS:
                checks.append((f"{MODELS[model]}, {profile}: gateway p99 < {TARGET_P99_MS} ms", gw.p99_ms < TARGET_P99_MS,
                               f"{gw.p99_ms:.2f} ms (baseline {base.p99_ms:.2f} ms)"))
    print("\ntargets")
    for text, met, value in checks:
        print(f"  [{'met' if met else 'MISSED'}] {text}: {value}")


def per_call_us(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Wall and CPU microseconds per call: medians of five timings of ``repeat`` calls."""
    call()
    walls, cpus = [], []
    for _ in range(5):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(repeat):
            call()
        walls.append((time.perf_counter() - wall) / repeat * 1e6)
        cpus.append((time.process_time() - cpu) / repeat * 1e6)
    return statistics.median(walls), statistics.median(cpus)


def print_costs(stack: Stack) -> None:
    """What each step of one /predict costs in one process (no concurrency)."""
    app = create_app(stack.overrides)
    svc = app.extensions["ml_api"]
    experiment = svc.catalog.get(stack.experiments["logreg"])
    body = {"user_id": "bench-1", "experiment": experiment.name, "features": FEATURES}
    gateway, baseline = app.test_client(), create_baseline("logreg").test_client()
    gateway_view = Client(app.wsgi_app.app)  # under the predict lane: Flask's own /predict view
    prefix = stack.config.redis_key_prefix
    sharded, keys = ShardedRedisAssignmentStore(svc.redis, prefix), RedisAssignmentStore(svc.redis, prefix)
    forest = load_model("forest", stack.config.model_dir, stack.config.model_files["forest"])
    logreg = load_model("logreg", stack.config.model_dir, stack.config.model_files["logreg"])
    event = {"experiment": {"name": experiment.name, "variant": "control"}, "model": {"name": "logreg"},
             "prediction": {"label": "virginica", "probability": 0.9}, "latency": {"total_ms": 1.0}}

    def every_100th(send: Callable[[], object]) -> Callable[[], bool]:
        calls = itertools.count(1)
        return lambda: next(calls) % 100 == 0 and send() is None

    flush_ids, flush_events = every_100th(svc.requests.flush), every_100th(svc.events.flush)
    write_samples = every_100th(SAMPLES.apply)

    def one_request_id() -> None:  # queued on the request path; a background thread sends 100 at a time
        svc.requests.remember(svc.requests.new_id(), experiment.name, "bench-1")
        flush_ids()

    def one_event() -> None:  # queued on the request path; encoded and written 100 at a time
        svc.events.emit(event_kinds.PREDICT, event)
        flush_events()

    def one_prediction_sampled() -> None:  # queued on the request path; written 100 at a time here
        observe(experiment, assignment, served, False, latency)
        write_samples()

    memory = StickyMemory(1000)
    memory.remember(experiment.id, "bench-1", "control")
    assignment = Assignment("control", True, AssignmentSource.MEMORY)
    served = svc.models.get("logreg")
    latency = {"assignment_ms": 0.01, "model_ms": 0.3, "total_ms": 0.5}

    steps = [
        ("validate the body", lambda: parse_predict(body, "x", 128), 2000),
        ("experiment definition (in-process cache)", lambda: svc.catalog.get(experiment.name), 2000),
        ("sticky answer from the worker's memory", lambda: memory.recall(experiment.id, "bench-1"), 2000),
        ("sticky claim, sharded store (EVALSHA)", lambda: sharded.claim(experiment.id, "bench-1", "control"), 500),
        ("sticky claim, keys store (SET NX GET)", lambda: keys.claim(experiment.id, "bench-1", "control"), 500),
        ("request id: queue it, 1/100 of a batch write", one_request_id, 2000),
        ("event: queue it, 1/100 of encoding + writing", one_event, 2000),
        ("Prometheus samples: queue them, 1/100 of writing", one_prediction_sampled, 2000),
        ("request statistics (guardrails)", lambda: svc.request_stats.record(experiment.id, "control", 0.5), 2000),
        ("LogisticRegression, sklearn predict_proba", lambda: logreg.estimator.predict_proba([FEATURES]), 300),
        ("LogisticRegression, single-row path", lambda: logreg.predict(FEATURES), 2000),
        ("the same within MODEL_TIMEOUT_MS (thread hand-off)", lambda: svc.models.predict_within_budget(
            served, FEATURES), 300),
        ("RandomForest, sklearn predict_proba", lambda: forest.estimator.predict_proba([FEATURES]), 20),
        ("RandomForest, flat single-row path", lambda: forest.predict(FEATURES), 300),
        ("whole /predict, baseline (Flask test client)", lambda: baseline.post("/predict", json=body), 300),
        ("whole /predict, gateway, Flask view (no lane)", lambda: gateway_view.post("/predict", json=body), 300),
        ("whole /predict, gateway (Flask test client)", lambda: gateway.post("/predict", json=body), 300),
    ]
    churn = load_model(NAMED_MODEL, stack.config.model_dir, stack.config.model_files[NAMED_MODEL])
    named_body = {"user_id": "bench-1", "experiment": stack.experiments[NAMED_MODEL], "features": CUSTOMER}
    steps += [
        ("churn pipeline: one-row DataFrame", lambda: churn.inputs.row(CUSTOMER), 300),
        ("churn pipeline: check the named columns", lambda: churn.inputs.check(NAMED_MODEL, CUSTOMER), 2000),
        ("churn pipeline: predict one named row", lambda: churn.predict(CUSTOMER), 100),
        ("whole /predict, named features, churn pipeline", lambda: gateway.post("/predict", json=named_body), 100),
    ]
    print(f"\nwhat one request costs, in one process ({os.cpu_count()} cores shared with everything else)")
    print(f"  {'step':<48}{'wall us':>9}{'cpu us':>9}")
    for text, call, repeat in steps:
        wall, cpu = per_call_us(call, repeat)
        print(f"  {text:<48}{wall:>9.0f}{cpu:>9.0f}")
    print_batch_throughput(gateway, body, named_body)
    # The private prefix and database are removed next: nothing may be written after that.
    svc.stop()  # writes the last queued request ids, events and counts
    # A flush already running when its thread was stopped may still meet the dropped database.
    logging.getLogger("ml_api.telemetry.request_stats").setLevel(logging.CRITICAL)


def print_batch_throughput(client: Any, *bodies: dict[str, Any]) -> None:
    """Rows per second: single /predict requests against one /predict/batch of BATCH_ROWS, for repeat visitors
    (no round trip) and for new ones (each recorded: a claim and an INSERT per request, one of each per batch)."""
    print(f"\nrows/s in one process: single /predict vs /predict/batch of {BATCH_ROWS}")
    for body in bodies:
        form = "named, churn pipeline" if isinstance(body["features"], dict) else "list, LogisticRegression"
        items = [{**body, "user_id": f"bench-{n}"} for n in range(BATCH_ROWS)]
        for item in items:  # first visits write to MySQL: measured below, with other users
            client.post("/predict", json=item)
        fresh = f"new-{secrets.token_hex(3)}"
        for visitors, single_users, batch_users in (
                ("repeat", [f"bench-{n}" for n in range(200)], [f"bench-{n}" for n in range(BATCH_ROWS)]),
                ("new", [f"{fresh}-s{n}" for n in range(200)], [f"{fresh}-b{n}" for n in range(BATCH_ROWS)])):
            single = rows_per_second(client, "/predict", [{**body, "user_id": u} for u in single_users])
            batched = rows_per_second(client, "/predict/batch", [{"items": [{**body, "user_id": u}
                                                                             for u in batch_users]}])
            print(f"  {form:<26}{visitors + ' visitors':<17}{single:>8.0f} rows/s single"
                  f"{batched:>9.0f} rows/s batch ({batched / single:.1f}x)")


def rows_per_second(client: Any, path: str, bodies: list[dict[str, Any]]) -> float:
    """Rows answered per second over ``bodies`` sent one after another (a batch body counts its items)."""
    started = time.perf_counter()
    for body in bodies:
        response = client.post(path, json=body)
        if response.status_code != 200 or response.get_json().get("errors"):
            raise RuntimeError(f"{path} failed: {response.get_data(as_text=True)[:300]}")
    return sum(len(body.get("items", [body])) for body in bodies) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="runs per figure; the median is shown")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 24, 32],
                        help="closed-loop levels: each connection sends its next request when answered")
    parser.add_argument("--paced-rate", type=float, default=1000,
                        help=f"requests/s offered by {TARGET_P99_CONNECTIONS} paced connections (0: no paced run)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--costs-only", action="store_true", help="only the in-process costs (no wrk runs)")
    parser.add_argument("--workers-only", action="store_true",
                        help="only the worker classes side by side, nginx in the path (bench/bench_workers.py)")
    args = parser.parse_args(argv)
    if args.costs_only:
        with private_stack(load_config(os.environ)) as stack:
            print_costs(stack)
        return 0
    from bench.bench_workers import compare_worker_classes  # it builds on this module

    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 1
    base = load_config(os.environ)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; gunicorn {base.gunicorn_workers} workers"
          f" x {base.gunicorn_threads} threads ({base.gunicorn_worker_class}); sticky store: {base.sticky_store}")
    with private_stack(base) as stack:
        profiles = [Profile(level) for level in args.connections]
        if args.paced_rate > 0:
            profiles.append(Profile(TARGET_P99_CONNECTIONS, args.paced_rate))
        cap = balanced_worker_connections(base, max(profile.connections for profile in profiles))
        stack.overrides["GUNICORN_WORKER_CONNECTIONS"] = str(cap)
        if args.workers_only:
            compare_worker_classes(stack, args.duration, min(args.rounds, WORKER_CLASS_ROUNDS))
            return 0
        print(f"worker_connections {cap} for both servers, so every worker gets a share of wrk's connections")
        for profile in profiles:
            if 1 < profile.connections < cap + base.gunicorn_threads:
                print(f"  caveat: at {profile.connections} connections one worker may still get all but "
                      f"{max(profile.connections - cap, 0)} of them")
        results = {model: bench_model(stack, model, profiles, args.duration, args.rounds) for model in args.models}
        print_load_table(results)
        print_targets(results)
        compare_worker_classes(stack, args.duration, min(args.rounds, WORKER_CLASS_ROUNDS))
        print_costs(stack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
