"""The event journal: events of a worker killed before it shipped them are delivered by another.

A real child process emits and is killed with SIGKILL; the parent, as the next worker,
recovers its journal through the real SQLite buffer to a real file destination."""

import json
import os
import signal
import subprocess
import sys
import textwrap

from ml_api.infra.spool import Spool
from ml_api.telemetry.events import EventEmitter, FileDestination
from ml_api.telemetry.journal import EventJournal, process_running, this_process
from tests.paths import PROJECT_ROOT
from tests.waiting import wait_until

KILLED_WORKER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from ml_api.infra.spool import Spool
    from ml_api.telemetry.events import EventEmitter, FileDestination
    from ml_api.telemetry.journal import EventJournal
    tmp = Path(sys.argv[1])
    emitter = EventEmitter(Spool(tmp / "buffer.db"), FileDestination(tmp / "events.jsonl"), "1",
                           EventJournal(tmp / "journal"))
    emitter.start()
    for n in range(int(sys.argv[2])):
        emitter.emit("predict", {"http": {"request": {"id": f"r{n}"}}})
    os.kill(os.getpid(), signal.SIGKILL)  # answered, not yet shipped (the shipper waits 0.2 s)
""")


def run_killed_worker(tmp_path, events: int) -> None:
    child = subprocess.run([sys.executable, "-c", KILLED_WORKER, str(tmp_path), str(events)], cwd=PROJECT_ROOT,
                           env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


def delivered(tmp_path) -> list[str]:
    path = tmp_path / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["http"]["request"]["id"] for line in lines]


def next_worker(tmp_path) -> EventEmitter:
    emitter = EventEmitter(Spool(tmp_path / "buffer.db"), FileDestination(tmp_path / "events.jsonl"), "1",
                           EventJournal(tmp_path / "journal"))
    emitter.start()
    return emitter


def test_events_of_a_killed_worker_are_delivered_by_the_next(tmp_path):
    run_killed_worker(tmp_path, 500)
    assert delivered(tmp_path) == []  # the killed worker shipped nothing
    emitter = next_worker(tmp_path)
    try:
        wait_until(lambda: sorted(delivered(tmp_path)) == sorted(f"r{n}" for n in range(500)),
                   message=lambda: f"{len(set(delivered(tmp_path)))} of 500 events recovered")
    finally:
        emitter.close()
    assert list((tmp_path / "journal").iterdir()) == []  # the recovered journal, and the next worker's own


def test_a_worker_leaves_no_journal_when_it_stops_normally(tmp_path):
    emitter = next_worker(tmp_path)
    for n in range(100):
        emitter.emit("predict", {"http": {"request": {"id": f"r{n}"}}})
    emitter.close()
    assert sorted(delivered(tmp_path)) == sorted(f"r{n}" for n in range(100))
    assert list((tmp_path / "journal").iterdir()) == []


def test_the_journal_of_a_running_process_is_left_alone(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        journal_dir = tmp_path / "journal"
        journal_dir.mkdir()
        started = open(f"/proc/{other.pid}/stat").read().rsplit(")", 1)[1].split()[19]
        live = journal_dir / f"{other.pid}-{started}-abcd-1.jsonl"
        live.write_bytes(b'{"a": 1}\n')
        reused_pid = journal_dir / f"{other.pid}-1-abcd-1.jsonl"  # same pid, another start time: a dead writer
        reused_pid.write_bytes(b'{"a": 2}\n')
        mine = EventJournal(journal_dir)
        mine.open()
        claimed = mine.orphans()
        assert [path.name.split(".")[0] for path in claimed] == [reused_pid.name.split(".")[0]]
        assert live.exists()
        mine.close()
    finally:
        other.stdin.close()
        other.wait()


def test_a_file_claimed_by_a_recoverer_that_died_is_claimed_again(tmp_path):
    journal_dir = tmp_path / "journal"
    journal_dir.mkdir()
    abandoned = journal_dir / "999999999-1-abcd-1.jsonl.999999998-1.recovering"
    abandoned.write_bytes(b'{"a": 1}\n{"a": 2}\n{"torn": ')
    mine = EventJournal(journal_dir)
    mine.open()
    (claimed,) = mine.orphans()
    assert claimed.name == f"999999999-1-abcd-1.jsonl.{this_process()}.recovering"
    mine.close()


def test_process_identity():
    assert process_running(this_process())
    assert not process_running("999999999-1")
    assert not process_running("garbage")
