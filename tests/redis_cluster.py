"""A three-master Redis Cluster on free loopback ports, for the tests that need one: started,
checked until every node says ``cluster_state:ok``, and removed with its files afterwards."""

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis

from tests.waiting import wait_until

MASTERS = 3
START_SECONDS = 15


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (client ports and cluster-bus ports)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def answers(port: int) -> bool:
    try:
        return redis.Redis(port=port, socket_timeout=0.5).ping()
    except redis.ConnectionError:
        return False


def cluster_ok(port: int) -> bool:
    return redis.Redis(port=port).cluster("info").get("cluster_state") == "ok"


@contextmanager
def running_cluster() -> Iterator[str]:
    """A three-master cluster of the caller alone; yields the URL of one of its nodes."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.fail("redis-server and redis-cli are needed (make test installs them)")
    ports = free_ports(2 * MASTERS)
    client_ports, bus_ports = ports[:MASTERS], ports[MASTERS:]
    workdir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
    processes: list[subprocess.Popen] = []
    try:
        for port, bus in zip(client_ports, bus_ports):
            node_dir = workdir / str(port)
            node_dir.mkdir()
            processes.append(subprocess.Popen(
                [server, "--port", str(port), "--cluster-port", str(bus), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--dir", str(node_dir),
                 "--save", "", "--appendonly", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        for port in client_ports:
            wait_until(lambda: answers(port), timeout=START_SECONDS, interval=0.05,
                       message=f"redis cluster: node {port} answering")
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in client_ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=START_SECONDS,
        )
        for port in client_ports:
            wait_until(lambda: cluster_ok(port), timeout=START_SECONDS, interval=0.05,
                       message=f"redis cluster: cluster_state:ok on {port}")
        yield f"redis://127.0.0.1:{client_ports[0]}/0"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
