"""Slow and lying clients cannot starve the workers: nginx reads every request whole before gunicorn sees it.

The real gunicorn behind a real nginx (the project's templates, rendered into the test's
directory): 200 connections send their headers at one byte a second and 50 send a body
shorter than their Content-Length, and while all of them are open, normal /predict requests
are answered at once. Without nginx, far fewer such connections stop gunicorn answering at all.
"""

import gc
import json
import math
import socket
import statistics
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from scripts.local_redis import free_port
from tests.conftest import start_gateway
from tests.nginx_server import Nginx, nginx_or_skip, running_nginx
from tests.waiting import wait_until

SLOW_HEADER_CLIENTS = 200
LYING_BODY_CLIENTS = 50
NORMAL_REQUESTS = 200
# The target for the latency of normal requests under the attack, printed with the figures;
# a run above it warns. What fails the test is starvation: without the proxy, requests wait
# for the slow clients' timeouts (seconds) or are never answered, far beyond this bound.
P99_TARGET_MS = 50.0
STARVED_MS = 1000.0
USERS = [f"steady-{n}" for n in range(20)]
IRIS = [5.1, 3.5, 1.4, 0.2]
# Headers that never end: one byte a second would take far longer than any test to send them.
SLOW_HEADERS = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: " + b"s" * 4000
LYING_REQUEST = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n" + b'{"user_id": "liar"')  # 18 of the 1000 bytes promised


class SlowClients:
    """Connections that hold a server's attention without ever finishing a request: headers
    sent one byte a second (by one thread, for all of them), or a body shorter than its
    Content-Length followed by silence."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._trickling: list[socket.socket] = []
        self._lying: list[socket.socket] = []
        self._sent = 1
        self.rounds = 0  # seconds of trickling so far
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)

    def open(self, slow_headers: int, lying_bodies: int) -> None:
        for _ in range(slow_headers):
            self._trickling.append(self._connect(SLOW_HEADERS[:1]))
        for _ in range(lying_bodies):
            self._lying.append(self._connect(LYING_REQUEST))
        self._thread.start()

    def _connect(self, first_bytes: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self._port), timeout=5)
        sock.settimeout(None)  # blocking again: MSG_DONTWAIT in still_open() must not wait for the timeout
        sock.sendall(first_bytes)
        return sock

    def _trickle(self) -> None:
        """The next byte of the headers on every trickling connection, once a second (the attack's pace)."""
        next_round = time.monotonic() + 1
        while not self._stop.wait(max(0.0, next_round - time.monotonic())):
            next_round += 1
            byte = SLOW_HEADERS[self._sent:self._sent + 1]
            for sock in self._trickling:
                try:
                    sock.sendall(byte)
                except OSError:
                    pass  # closed by the server: still_open() tells
            self._sent += 1
            self.rounds += 1

    def still_open(self) -> int:
        """How many connections the server has not closed (a closed one reads as EOF or an error)."""
        count = 0
        for sock in self._trickling + self._lying:
            try:
                if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                    continue  # the server answered something: not held open waiting
            except BlockingIOError:
                count += 1  # nothing to read: still open, still waiting for the rest
            except OSError:
                pass
        return count

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for sock in self._trickling + self._lying:
            sock.close()


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``share`` of the values at or below it."""
    return sorted_values[max(0, math.ceil(share * len(sorted_values)) - 1)]


def predict(session: requests.Session, url: str, experiment: str, user: str) -> requests.Response:
    return session.post(f"{url}/predict", json={"user_id": user, "experiment": experiment, "features": IRIS},
                        timeout=10)


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    return nginx_or_skip()


@contextmanager
def proxied_gateway(nginx_binary: str, overrides: dict[str, str], tmp_path: Path) -> Iterator[Nginx]:
    """This test's gunicorn behind nginx, with client timeouts long enough that only buffering
    (not nginx dropping the slow clients) can explain the normal requests' latency."""
    gateway = start_gateway(overrides, tmp_path)
    try:
        with running_nginx(nginx_binary, gateway.url.removeprefix("http://"), tmp_path / "nginx",
                           PROXY_CLIENT_HEADER_TIMEOUT="120", PROXY_CLIENT_BODY_TIMEOUT="120") as server:
            yield server
    finally:
        gateway.stop()


@pytest.fixture
def proxied(nginx_binary: str, overrides: dict[str, str], tmp_path: Path) -> Iterator[Nginx]:
    with proxied_gateway(nginx_binary, overrides, tmp_path) as server:
        yield server


def test_slow_and_lying_clients_do_not_delay_normal_requests(nginx_binary, overrides, make_experiment, tmp_path):
    # The experiment exists before the workers start, and they do not look for changes while
    # measured: the latency is the request's own, not a MySQL read shared with other tests.
    experiment = make_experiment()
    with proxied_gateway(nginx_binary, {**overrides, "CONFIG_REFRESH_SECONDS": "600"}, tmp_path) as proxied:
        measure_under_attack(proxied, experiment)


def measure_under_attack(proxied: Nginx, experiment: str) -> None:
    session = requests.Session()
    for n in range(5 * len(USERS)):  # first exposures, models and connections warm in both workers
        assert predict(session, proxied.url, experiment, USERS[n % len(USERS)]).status_code == 200

    attack = SlowClients(proxied.port)
    try:
        attack.open(SLOW_HEADER_CLIENTS, LYING_BODY_CLIENTS)
        wait_until(lambda: attack.rounds >= 1, timeout=10, message="the first byte-a-second round")
        latencies, statuses = [], []
        gc.collect()
        gc.disable()  # a collection in this (test) process is not the server's latency
        try:
            for n in range(NORMAL_REQUESTS):
                started = time.perf_counter()
                response = predict(session, proxied.url, experiment, USERS[n % len(USERS)])
                latencies.append((time.perf_counter() - started) * 1000)
                statuses.append(response.status_code)
        finally:
            gc.enable()
        open_during = attack.still_open()
        rounds = attack.rounds
    finally:
        attack.close()

    latencies.sort()
    p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
    print(f"\n{NORMAL_REQUESTS} requests through nginx while {SLOW_HEADER_CLIENTS} slow-header and "
          f"{LYING_BODY_CLIENTS} lying-body connections were open ({rounds} s of trickling): "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {latencies[-1]:.2f} ms, mean {statistics.mean(latencies):.2f} ms")
    assert statuses == [200] * NORMAL_REQUESTS
    assert open_during == SLOW_HEADER_CLIENTS + LYING_BODY_CLIENTS, "nginx dropped slow clients during the run"
    assert latencies[-1] < STARVED_MS, f"a request waited {latencies[-1]:.0f} ms: starved (p99 {p99:.1f} ms)"
    if p99 >= P99_TARGET_MS:  # timing on a shared machine: reported, not failed (the starvation bound fails)
        warnings.warn(f"p99 {p99:.1f} ms is above the {P99_TARGET_MS:g} ms target (p50 {p50:.1f} ms); "
                      "is the machine busy with other work?", stacklevel=1)


def test_without_nginx_slow_clients_starve_gunicorn(overrides, tmp_path):
    """What nginx prevents, so the test above is known to attack something: gunicorn alone
    (one worker, four threads) hands each connection to a thread that waits for its request."""
    gateway = start_gateway(overrides, tmp_path, workers=1)
    attack = SlowClients(int(gateway.url.rsplit(":", 1)[1]))
    try:
        attack.open(slow_headers=20, lying_bodies=0)
        with pytest.raises(requests.Timeout):
            requests.get(f"{gateway.url}/health", timeout=3)
    finally:
        attack.close()
        gateway.stop()


def test_nginx_drops_clients_that_do_not_finish_in_time(nginx_binary, tmp_path):
    """The timeouts of api.env bound how long a slow client holds even an nginx connection.
    nginx closes such a connection without an answer (no upstream is needed to see it)."""
    timeout = 2
    with running_nginx(nginx_binary, f"127.0.0.1:{free_port()}", tmp_path / "nginx",
                       PROXY_CLIENT_HEADER_TIMEOUT=str(timeout), PROXY_CLIENT_BODY_TIMEOUT=str(timeout)) as server:
        attack = SlowClients(server.port)
        try:
            started = time.monotonic()
            attack.open(slow_headers=3, lying_bodies=3)
            wait_until(lambda: attack.still_open() == 0, timeout=30, interval=0.1,
                       message="nginx closing the slow and the lying connections")
            elapsed = time.monotonic() - started
        finally:
            attack.close()
    assert elapsed >= timeout * 0.9, f"closed after {elapsed:.1f} s, before the {timeout} s timeout"


def test_predict_through_nginx_and_a_body_over_the_limit_refused_by_nginx(proxied, make_experiment):
    experiment = make_experiment()
    limit = proxied.config.max_body_bytes
    body = {"user_id": "through-nginx", "experiment": experiment, "features": IRIS}
    response = requests.post(f"{proxied.url}/predict", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["experiment"] == experiment

    text = json.dumps(body).encode()
    just_fits = text + b" " * (limit - len(text))  # JSON with trailing spaces, exactly MAX_BODY_BYTES
    response = requests.post(f"{proxied.url}/predict", data=just_fits,
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 200, response.text

    for data in (just_fits + b" ", iter([just_fits, b" "])):  # declared length, then chunked
        response = requests.post(f"{proxied.url}/predict", data=data,
                                 headers={"Content-Type": "application/json"}, timeout=10)
        assert response.status_code == 413
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"] == "request_entity_too_large"
        assert "MAX_BODY_BYTES" in response.json()["detail"]
    assert proxied.error_log().count("client intended to send too large") == 2, "refused by nginx, not gunicorn"


def test_a_batch_larger_than_one_request_passes_nginx(proxied, make_experiment):
    """/predict/batch has its own, larger limit (MAX_BATCH_BODY_BYTES), in nginx as in the gateway."""
    experiment = make_experiment()
    items = [{"user_id": f"batch-{n}", "experiment": experiment, "features": IRIS} for n in range(400)]
    assert len(json.dumps({"items": items})) > proxied.config.max_body_bytes
    response = requests.post(f"{proxied.url}/predict/batch", json={"items": items}, timeout=30)
    assert response.status_code == 200, response.text[:300]


def test_nginx_answers_json_when_gunicorn_is_down(nginx_binary, tmp_path):
    with running_nginx(nginx_binary, f"127.0.0.1:{free_port()}", tmp_path / "nginx") as server:
        response = requests.get(f"{server.url}/health", timeout=10)
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "bad_gateway"
