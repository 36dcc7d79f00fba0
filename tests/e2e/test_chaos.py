"""Chaos: real load while everything the gateway depends on fails, then a reconciliation.

Eight clients send new and returning users to /predict and post feedback right after each
answer, as a well-behaved client would (it sends request_id, user_id and experiment, honours
Retry-After on 503 and retries a request whose connection was cut). Meanwhile, every
``CYCLE`` seconds: MySQL is cut through a relay for 10 s, Redis is killed and restarted
empty, a gunicorn worker is killed (SIGKILL), and the event receiver dies in the middle of
a batch and comes back. Afterwards:

- every 200 in-experiment answer has exactly one exposure row, with the served variant;
- every 202 feedback has exactly one outcome row, for the user and the served variant;
- every answered request has its event (predict by request id, feedback by feedback id);
- no user switched variant, no feedback for a served user was refused, no 5xx.

The suite runs one 60 s cycle; ``make chaos`` runs ``CHAOS_SECONDS`` (default 300) and
prints the counts (they are printed here too, and shown when the test fails).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest
import requests

from scripts.local_redis import RedisProcess, free_port
from tests.conftest import start_gateway
from tests.logstash_standin import StandInLogstash
from tests.netproxy import TcpProxy
from tests.waiting import wait_until, wait_until_moment

DURATION = float(os.environ.get("CHAOS_SECONDS", "60"))
CYCLE = 60.0
CLIENTS = 8
RETURNING_SHARE = 0.3
FEEDBACK_PATIENCE = 60.0  # how long a client keeps retrying a feedback answered 503
IRIS = [6.1, 2.8, 4.7, 1.2]


@dataclass
class Ledger:
    """What the clients were told, to be reconciled with what was stored."""

    served: dict[str, tuple[str, str]] = field(default_factory=dict)  # request id -> (user, variant)
    accepted: dict[str, tuple[str, str]] = field(default_factory=dict)  # feedback id -> (user, variant)
    variants: dict[str, str] = field(default_factory=dict)  # user -> the variant first served
    first_served: dict[str, float] = field(default_factory=dict)  # user -> when (monotonic), for diagnosis
    switched: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # feedback for a served user answered 4xx
    client_errors: list[str] = field(default_factory=list)  # clients that stopped on an exception
    server_errors: list[str] = field(default_factory=list)  # what each 5xx other than 503 said, and when
    counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1


class Client(threading.Thread):
    def __init__(self, number: int, url: str, experiment: str, ledger: Ledger, stop: threading.Event) -> None:
        super().__init__(name=f"chaos-client-{number}", daemon=True)
        self._number, self._url, self._experiment = number, url, experiment
        self._ledger, self._halt = ledger, stop
        self._random = random.Random(number)
        self._session = requests.Session()
        self._mine: list[str] = []

    def run(self) -> None:
        try:
            self._load()
        except BaseException as exc:  # a client that stops early would hide what it did not send
            with self._ledger.lock:
                self._ledger.client_errors.append(f"{self.name}: {exc!r}")

    def _load(self) -> None:
        while not self._halt.is_set():
            returning = self._mine and self._random.random() < RETURNING_SHARE
            user = self._random.choice(self._mine) if returning else f"chaos-{self._number}-{len(self._mine)}"
            self._ledger.count("predict returning" if returning else "predict new")
            answer = self._predict(user)
            if answer is not None and answer["in_experiment"]:
                if not returning:
                    self._mine.append(user)
                self._feedback(user, answer)

    def _post(self, path: str, body: dict, kind: str) -> requests.Response:
        """POST, once more on a new connection whenever the connection is cut (a worker killed),
        before the answer or in the middle of it."""
        while True:
            try:
                return self._session.post(self._url + path, json=body, timeout=30)
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
                self._ledger.count(f"{kind} connection cut, retried")
                self._session = requests.Session()

    def _note_server_error(self, kind: str, response: requests.Response) -> None:
        if response.status_code >= 500 and response.status_code != 503:
            with self._ledger.lock:
                self._ledger.server_errors.append(
                    f"{kind} {response.status_code} at {time.monotonic():.1f}: {response.text[:300]}")

    def _predict(self, user: str) -> dict | None:
        response = self._post("/predict", {"user_id": user, "experiment": self._experiment, "features": IRIS},
                              "predict")
        self._ledger.count(f"predict {response.status_code}")
        self._note_server_error("predict", response)
        if response.status_code != 200:
            return None
        answer = response.json()
        if answer["in_experiment"]:
            with self._ledger.lock:
                self._ledger.served[answer["request_id"]] = (user, answer["variant"])
                first = self._ledger.variants.setdefault(user, answer["variant"])
                self._ledger.first_served.setdefault(user, time.monotonic())
                if first != answer["variant"]:
                    self._ledger.switched.append(f"{user}: {first} then {answer['variant']}")
        return answer

    def _feedback(self, user: str, answer: dict) -> None:
        body = {"request_id": answer["request_id"], "user_id": user, "experiment": self._experiment,
                "outcome": self._random.random() < 0.3}
        give_up = time.monotonic() + FEEDBACK_PATIENCE
        while True:
            response = self._post("/feedback", body, "feedback")
            self._ledger.count(f"feedback {response.status_code}")
            self._note_server_error("feedback", response)
            if response.status_code == 202:
                reply = response.json()
                with self._ledger.lock:
                    self._ledger.accepted[reply["feedback_id"]] = (user, reply["variant"])
                return
            if response.status_code != 503 or time.monotonic() > give_up:
                with self._ledger.lock:
                    self._ledger.refused.append(f"{user}: {response.status_code} {response.text[:200]}")
                return
            self._halt.wait(float(response.headers.get("Retry-After", "1")))  # as asked, then again


class Faults(threading.Thread):
    """The fault schedule, repeated every CYCLE seconds from ``start``."""

    def __init__(self, start: float, mysql: TcpProxy, redis_server: RedisProcess, logstash: StandInLogstash,
                 workers: callable, ledger: Ledger) -> None:
        super().__init__(name="chaos-faults", daemon=True)
        self._begin, self._mysql, self._redis, self._logstash = start, mysql, redis_server, logstash
        self._workers, self._ledger = workers, ledger
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for cycle in range(max(1, int(DURATION // CYCLE))):
                self._cycle(self._begin + cycle * CYCLE)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _at(self, cycle_start: float, offset: float) -> None:
        wait_until_moment(cycle_start + offset)

    def _cycle(self, begin: float) -> None:
        self._at(begin, 6)
        self._mysql.cut()
        self._ledger.count("fault: MySQL cut for 10 s")
        self._at(begin, 16)
        self._mysql.restore()
        self._at(begin, 20)
        self._redis.kill()
        self._ledger.count("fault: Redis killed, restarted empty 3 s later")
        self._at(begin, 23)
        self._redis.start()
        self._at(begin, 28)
        os.kill(min(self._workers()), signal.SIGKILL)
        self._ledger.count("fault: a worker killed (SIGKILL)")
        self._at(begin, 34)
        self._logstash.crash_during_next_batches(1)
        wait_until(lambda: not self._logstash.running, message="the event receiver never got a batch to die in")
        self._ledger.count("fault: event receiver died mid-batch, back 4 s later")
        self._at(begin, 40)
        self._logstash.start()


@pytest.fixture
def chaos_redis(tmp_path):
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chaos_mysql(config):
    proxy = TcpProxy(config.mysql.host, config.mysql.port)
    yield proxy
    proxy.close()


@pytest.fixture
def chaos_logstash():
    standin = StandInLogstash(free_port())
    standin.start()
    yield standin
    standin.stop()


def stored(db, sql: str, experiment_id: int) -> list[tuple]:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute(sql, (experiment_id,))
        return cursor.fetchall()


def server_log_errors(gateway, lines: int = 40) -> str:
    """The gunicorn log from each logged error on (a 5xx's traceback), or its end if none."""
    log = gateway.log_path.read_text(errors="replace").splitlines()
    starts = [n for n, line in enumerate(log) if "unhandled error" in line or "Traceback" in line]
    chunks = [log[n:n + lines] for n in starts[:3]] or [log[-lines:]]
    return "\n...\n".join("\n".join(chunk) for chunk in chunks)


def test_chaos(overrides, tmp_path, chaos_redis, chaos_mysql, chaos_logstash, repo, db, make_experiment):
    experiment = make_experiment((50, 50))
    gateway = start_gateway({
        **overrides,
        "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(chaos_mysql.port),
        "REDIS_URL": chaos_redis.url,
        "LOGSTASH_HOST": "127.0.0.1", "LOGSTASH_PORT": str(chaos_logstash.port),
    }, tmp_path, workers=2)
    ledger = Ledger()
    stop = threading.Event()
    try:
        gateway.worker_pids()
        start = time.monotonic()
        faults = Faults(start, chaos_mysql, chaos_redis, chaos_logstash, gateway.worker_pids, ledger)
        clients = [Client(n, gateway.url, experiment, ledger, stop) for n in range(CLIENTS)]
        for thread in (faults, *clients):
            thread.start()
        print(f"chaos run starts at {start:.1f} (monotonic)")
        wait_until_moment(start + DURATION)
        stop.set()
        faults.join(timeout=60)
        for client in clients:
            client.join(timeout=FEEDBACK_PATIENCE + 30)
        assert faults.error is None, f"the fault schedule failed: {faults.error!r}"

        gateway.wait_for_empty_spool(timeout=120)
        expected_events = set(ledger.served) | set(ledger.accepted)

        def missing_events() -> set[str]:
            return expected_events - {e["http"]["request"]["id"] for e in chaos_logstash.events()
                                      if e["event"]["action"] in ("predict", "feedback")}

        try:
            wait_until(lambda: not missing_events(), timeout=60, interval=0.5)
        except AssertionError:
            pass  # reported with the other counts below
        experiment_id = repo.get(experiment).id
        exposures = dict(stored(db, "SELECT user_id, variant FROM assignments WHERE experiment_id = %s",
                                experiment_id))
        outcomes: dict[str, list[tuple[str, str]]] = {}
        for feedback_id, user, variant in stored(
                db, "SELECT feedback_id, user_id, variant FROM outcomes WHERE experiment_id = %s", experiment_id):
            outcomes.setdefault(feedback_id, []).append((user, variant))

        wrong_exposures = [f"{user}: served {variant} {ledger.first_served[user] - start:.1f} s into the run, "
                           f"stored {exposures.get(user)}"
                           for user, variant in ledger.served.values() if exposures.get(user) != variant]
        wrong_outcomes = [f"{fid}: accepted for {told}, stored {outcomes.get(fid)}"
                          for fid, told in ledger.accepted.items() if outcomes.get(fid) != [told]]
        lost_events = missing_events()
        server_errors = {k: v for k, v in ledger.counts.items() if k.split()[-1].startswith("5")
                         and not k.endswith("503")}
        report = "\n".join([
            f"chaos run: {DURATION:g} s, {CLIENTS} clients, {len(ledger.variants)} users",
            *(f"  {what:<56} {n:>8}" for what, n in sorted(ledger.counts.items())),
            f"  {'200 in-experiment answers':<56} {len(ledger.served):>8}",
            f"  {'  without their exposure row (or another variant)':<56} {len(wrong_exposures):>8}",
            f"  {'202 feedback answers':<56} {len(ledger.accepted):>8}",
            f"  {'  without exactly one matching outcome row':<56} {len(wrong_outcomes):>8}",
            f"  {'answered requests without their event':<56} {len(lost_events):>8}",
            f"  {'users who switched variant':<56} {len(ledger.switched):>8}",
            f"  {'feedback for served users refused':<56} {len(ledger.refused):>8}",
            f"  {'event batches the receiver died in':<56} {chaos_logstash.crashes:>8}",
        ])
        print("\n" + report)
        assert not ledger.client_errors, f"{report}\n{ledger.client_errors}"
        assert ledger.served and ledger.accepted, report
        assert not wrong_exposures, f"{report}\n{wrong_exposures[:10]}"
        assert not wrong_outcomes, f"{report}\n{wrong_outcomes[:10]}"
        assert not lost_events, f"{report}\n{sorted(lost_events)[:10]}"
        assert not ledger.switched, f"{report}\n{ledger.switched[:10]}"
        assert not ledger.refused, f"{report}\n{ledger.refused[:10]}"
        assert not server_errors, f"{report}\n{ledger.server_errors}\n{server_log_errors(gateway)}"
    finally:
        stop.set()
        gateway.stop()
