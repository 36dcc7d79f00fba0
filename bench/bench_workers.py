"""gunicorn's worker classes side by side, with the reverse proxy in the path.

    PYTHONPATH=. python bench/bench_gateway.py --workers-only [--duration 5] [--rounds 3]   # also in `make bench`

For each demo model (iris: LogisticRegression and RandomForest on a list; churn: the
LogisticRegression pipeline on named features) and each GUNICORN_WORKER_CLASS, two servers run at once: the
gateway as `make run` serves it (nginx ▶ gunicorn on a unix socket) and the bare Flask
baseline (``bench/baseline_app.py``) on gunicorn with no proxy, under the same worker class.
All four of a model are driven by wrk in interleaved rounds, order alternating, so drift on
a shared machine hits each alike: a paced load (32 connections, ~1,000 requests/s in all:
the p99 target) and a closed loop (32 connections, as fast as answered: the throughput
target, against the faster of the two baselines). Medians over rounds.
"""

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.bench_gateway import (
    CUSTOMER,
    FEATURES,
    NAMED_MODEL,
    START_SECONDS,
    WARMUP_SECONDS,
    Load,
    Profile,
    Server,
    Stack,
    gunicorn,
    healthy,
    median_load,
    visit_everyone,
    wrk,
    write_wrk_script,
)
from ml_api.config import WORKER_CLASSES
from scripts import nginx_conf
from tests.nginx_server import running_nginx

MODELS = {"logreg": ("iris LogisticRegression", FEATURES), "forest": ("iris RandomForest", FEATURES),
          NAMED_MODEL: ("churn pipeline (named)", CUSTOMER)}
CONNECTIONS = 32
PACED_RATE = 1000.0
TARGET_P99_MS = 10.0
TARGET_RATIO = 0.9


@dataclass(frozen=True)
class Pair:
    """The figures of one model under one worker class."""

    baseline: dict[Profile, Load]
    gateway: dict[Profile, Load]


@contextmanager
def behind_proxy(overrides: dict[str, str], workdir: Path, label: str) -> Iterator[Server]:
    """The gateway as `make run` serves it: nginx on a free port, gunicorn on a unix socket behind it."""
    binary = nginx_conf.nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed: `make proxy` installs it")
    bind = f"unix:{workdir / f'{label}.sock'}"
    prefix = workdir / f"{label}-nginx"
    prefix.mkdir(exist_ok=True)
    with gunicorn("ml_api:create_app()", overrides, workdir, label, bind) as upstream, \
            running_nginx(binary, bind, prefix) as proxy:
        deadline = time.monotonic() + START_SECONDS
        while not healthy(proxy.url):  # nginx answers 502 until a worker has loaded
            if time.monotonic() > deadline:
                raise RuntimeError(f"{label} did not answer through nginx: {proxy.error_log()[-2000:]}")
            time.sleep(0.1)
        yield Server(proxy.url, upstream.pidfile)


def bench_model(stack: Stack, model: str, worker_classes: list[str], seconds: int, rounds: int) -> dict[str, Pair]:
    """Per worker class, the baseline's and the proxied gateway's medians at each load."""
    features = MODELS[model][1]
    profiles = [Profile(CONNECTIONS, PACED_RATE), Profile(CONNECTIONS)]
    scripts = {profile: write_wrk_script(stack, model, profile, features) for profile in profiles}
    with ExitStack() as running:
        servers: dict[tuple[str, str], Server] = {}
        for worker_class in worker_classes:
            overrides = {**stack.overrides, "GUNICORN_WORKER_CLASS": worker_class}
            servers[worker_class, "gateway"] = running.enter_context(
                behind_proxy(overrides, stack.workdir, f"gateway-{worker_class}"))
            servers[worker_class, "baseline"] = running.enter_context(gunicorn(
                f'bench.baseline_app:create_app("{model}")', overrides, stack.workdir, f"baseline-{worker_class}"))
            visit_everyone(servers[worker_class, "gateway"].url, stack.experiments[model], features)
        for server in servers.values():  # connection pools, models, definitions
            wrk(server, scripts[profiles[-1]], 8, WARMUP_SECONDS)
        runs: dict[tuple[str, str, Profile], list[Load]] = {}
        order = list(servers)
        for round_ in range(rounds):
            for profile in profiles:
                for key in order if round_ % 2 == 0 else order[::-1]:
                    runs.setdefault((*key, profile), []).append(wrk(servers[key], scripts[profile], CONNECTIONS,
                                                                     seconds))
    return {worker_class: Pair(*({p: median_load(runs[worker_class, kind, p]) for p in profiles}
                                 for kind in ("baseline", "gateway")))
            for worker_class in worker_classes}


def print_comparison(results: dict[str, dict[str, Pair]]) -> None:
    print("\nworker classes, POST /predict, repeat visitors: gateway = nginx > gunicorn (unix socket) > gateway;"
          " baseline = bare Flask on gunicorn, no proxy")
    print(f"{'model':<26}{'worker':<9}{'load':>22}{'baseline r/s':>14}{'p50':>7}{'p99':>7}"
          f"{'gateway r/s':>13}{'p50':>7}{'p99':>7}{'cpu':>6}{'ratio':>7}")
    for model, pairs in results.items():
        for worker_class, pair in pairs.items():
            for profile, gw in pair.gateway.items():
                base = pair.baseline[profile]
                print(f"{MODELS[model][0]:<26}{worker_class:<9}{str(profile):>22}{base.rps:>14.0f}{base.p50_ms:>7.2f}"
                      f"{base.p99_ms:>7.2f}{gw.rps:>13.0f}{gw.p50_ms:>7.2f}{gw.p99_ms:>7.2f}{gw.cpu_us:>6.0f}"
                      f"{gw.rps / base.rps:>7.2f}")
    print("(ms; cpu = microseconds of gunicorn worker CPU per request, nginx not included;"
          " ratio = gateway/baseline requests/s under the same worker class)")
    print_targets(results)


def print_targets(results: dict[str, dict[str, Pair]]) -> None:
    """p99 at the paced load; closed-loop throughput against the faster baseline of either worker class."""
    print("\ntargets (gateway behind nginx)")
    for model, pairs in results.items():
        closed = Profile(CONNECTIONS)
        best_baseline = max(pair.baseline[closed].rps for pair in pairs.values())
        for worker_class, pair in pairs.items():
            paced = pair.gateway[Profile(CONNECTIONS, PACED_RATE)]
            ratio = pair.gateway[closed].rps / best_baseline
            for text, met, value in (
                (f"paced ~{PACED_RATE:.0f} r/s p99 < {TARGET_P99_MS:.0f} ms", paced.p99_ms < TARGET_P99_MS,
                 f"{paced.p99_ms:.2f} ms"),
                (f"{closed} throughput >= {TARGET_RATIO} x the faster bare baseline", ratio >= TARGET_RATIO,
                 f"{ratio:.2f} ({pair.gateway[closed].rps:.0f} / {best_baseline:.0f} r/s)"),
            ):
                print(f"  [{'met' if met else 'MISSED'}] {MODELS[model][0]}, {worker_class}: {text}: {value}")


def compare_worker_classes(stack: Stack, seconds: int, rounds: int,
                           worker_classes: list[str] = list(WORKER_CLASSES)) -> None:
    """Measure and print both worker classes for both demo models."""
    print_comparison({model: bench_model(stack, model, worker_classes, seconds, rounds) for model in MODELS})
