"""Scale-out: two gateway instances (two gunicorns on their own ports, each with its own spool,
snapshot and event file, as two hosts would be) behind one nginx, sharing a three-master
Redis Cluster and MySQL.

Users keep their variant whichever instance answers them, also after the weights change;
a change made through one instance's admin API is seen by every request the other answers
once ``CONFIG_REFRESH_SECONDS`` have passed.
"""

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import Gateway, isolated_settings, read_events, start_gateway
from tests.nginx_server import Nginx, nginx_or_skip, running_nginx
from tests.redis_cluster import running_cluster
from tests.waiting import wait_until, wait_until_moment

REFRESH_SECONDS = 0.5
IRIS = [5.7, 2.8, 4.1, 1.3]
USERS = 40
START_SECONDS = 60  # a gunicorn loading its models on a loaded 2-core machine


@dataclass
class Deployment:
    hosts: list[Gateway]
    proxy: Nginx
    token: str


@pytest.fixture
def deployment(mysql_database, redis_prefix, model_dir, tmp_path) -> Iterator[Deployment]:
    token = secrets.token_urlsafe(16)
    with running_cluster() as cluster_url:
        hosts: list[Gateway] = []

        def start_host(name: str) -> None:
            directory = tmp_path / name
            directory.mkdir()
            settings = {**isolated_settings(mysql_database, redis_prefix, model_dir, directory),
                        "REDIS_URL": cluster_url, "REDIS_CLUSTER": "true", "REDIS_TIMEOUT_SECONDS": "1",
                        "CONFIG_REFRESH_SECONDS": str(REFRESH_SECONDS), "ADMIN_TOKEN": token}
            hosts.append(start_gateway(settings, directory, workers=1, timeout=START_SECONDS))

        try:
            with ThreadPoolExecutor(2) as pool:  # both boot at once: half the wait on a busy machine
                list(pool.map(start_host, ["host-a", "host-b"]))
            hosts.sort(key=lambda host: host.env["EVENT_FILE"])  # host-a first
            upstreams = ",".join(host.env["GUNICORN_BIND"] for host in hosts)
            with running_nginx(nginx_or_skip(), hosts[0].env["GUNICORN_BIND"], tmp_path / "nginx",
                               PROXY_UPSTREAMS=upstreams) as proxy:
                yield Deployment(hosts, proxy, token)
        finally:
            for host in hosts:
                host.stop()


def variant(url: str, experiment: str, user: str) -> str:
    """The variant ``url`` serves ``user``, on a connection of its own (so nginx may pick either host)."""
    response = requests.post(f"{url}/predict", json={"user_id": user, "experiment": experiment, "features": IRIS},
                             headers={"Connection": "close"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["in_experiment"] is True
    return response.json()["variant"]


def predictions(host: Gateway, experiment: str) -> list[dict]:
    """The predict events this host wrote (its own EVENT_FILE, as a host's own logs)."""
    return [e for e in read_events(Path(host.env["EVENT_FILE"]))
            if e["event"]["action"] == "predict" and e.get("experiment", {}).get("name") == experiment]


def test_users_keep_their_variant_on_every_host_and_a_change_on_one_reaches_the_other(deployment, make_experiment):
    host_a, host_b = deployment.hosts
    experiment = make_experiment(weights=(50, 50))
    users = [f"scale-{secrets.token_hex(3)}-{i}" for i in range(USERS)]

    first = {user: variant(host_a.url, experiment, user) for user in users}  # every one new, on host A
    assert set(first.values()) == {"control", "variation"}
    assert {user: variant(host_b.url, experiment, user) for user in users} == first
    # Host B had never seen them: the shared cluster answered (not MySQL, not the hash).
    events = wait_until(lambda: len(predictions(host_b, experiment)) == USERS and predictions(host_b, experiment),
                        timeout=15, message="host B's events for its requests")
    assert [e["experiment"]["assignment_source"] for e in events] == ["redis"] * USERS
    # Through the proxy, each request on a new connection: both hosts answer some of them.
    for _ in range(2):
        assert {user: variant(deployment.proxy.url, experiment, user) for user in users} == first
    wait_until(lambda: all(len(predictions(host, experiment)) > USERS for host in (host_a, host_b)), timeout=15,
               message="both hosts answered some of the proxy's requests")

    # A change through host A's admin API; host B sees it within the refresh interval.
    response = requests.patch(f"{host_a.url}/admin/experiments/{experiment}",
                              json={"weights": {"control": 0, "variation": 100}},
                              headers={"Authorization": f"Bearer {deployment.token}", "X-Actor": "scale-test"},
                              timeout=30)
    assert response.status_code == 200, response.text
    wait_until_moment(time.monotonic() + REFRESH_SECONDS + 0.05)  # the promised bound is what is tested
    newcomers = [f"late-{secrets.token_hex(3)}-{i}" for i in range(10)]
    assert {variant(host_b.url, experiment, user) for user in newcomers} == {"variation"}
    assert {variant(deployment.proxy.url, experiment, f"{user}-proxy") for user in newcomers} == {"variation"}
    # The users assigned before the change keep their variant on both hosts and through the proxy.
    assert {user: variant(host_b.url, experiment, user) for user in users} == first
    assert {user: variant(deployment.proxy.url, experiment, user) for user in users} == first
