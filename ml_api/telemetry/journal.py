"""Events a worker has answered for, kept outside the process until they are delivered.

A request's event is queued in memory and shipped a fraction of a second later; a worker
killed in between (SIGKILL, the OOM killer, a gunicorn timeout) would take those events
with it, though their requests were answered. So ``emit`` also appends the encoded line to
this worker's journal file: one ``write`` system call into the page cache, which outlives
the process. The shipper starts a new file each time it takes the queue, and deletes the
old one once everything in it was delivered or put in the host's disk buffer.

Any worker (every ``SHIP_INTERVAL_SECONDS``) moves the files of processes that no longer
run into the disk buffer, from where they are delivered like any other buffered batch. A
file is claimed by renaming it first, so two workers never recover the same file; a
process is identified by its pid and start time, so a reused pid is not taken for the
journal's writer. Delivery stays at least once: a worker killed after a send but before
deleting the file has those events sent again, and the document id deduplicates them.
"""

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
CLAIMED = ".recovering"


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None when it does not run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "unknown"
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)": state is fields[0], start time is field 22
    return fields[19] if fields[0] != "Z" else None  # a zombie has finished writing


def process_running(identity: str) -> bool:
    """Whether the process ``<pid>-<start time>`` (how journal names begin) still runs."""
    parts = identity.split("-")
    try:
        pid, started = int(parts[0]), parts[1]
    except (ValueError, IndexError):
        return False
    if not Path("/proc/self/stat").exists():  # no /proc: ask the kernel whether the pid exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    now = process_start_time(pid)
    return now is not None and (now == started or now == "unknown")


def this_process() -> str:
    pid = os.getpid()
    return f"{pid}-{process_start_time(pid) or 'unknown'}"


class EventJournal:
    """This process's journal files in ``directory``. Not thread-safe: the emitter serialises calls."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None
        self._path: Path | None = None
        self._prefix = ""
        self._files = 0

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self) -> None:
        """Start writing (in the worker, after the fork: the file names carry its pid)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._prefix = f"{this_process()}-{secrets.token_hex(4)}"
        self._open_next()

    def _open_next(self) -> None:
        self._files += 1
        self._path = self.directory / f"{self._prefix}-{self._files}{SUFFIX}"
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def append(self, line: bytes) -> None:
        """One write: whole, or not at all as far as recovery is concerned (a torn last line is skipped)."""
        if self._fd is not None:
            os.write(self._fd, line)

    def rotate(self) -> Path | None:
        """Continue in a new file; the old one's path, to be ``discard``-ed once its events are safe."""
        if self._fd is None:
            return None
        old = self._path
        os.close(self._fd)
        self._open_next()
        return old

    @staticmethod
    def discard(paths: list[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop writing and delete the current file (call once its events are delivered or buffered)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.discard([self._path])

    def orphans(self) -> list[Path]:
        """Claim the files of processes that no longer run: renamed to ``<name>.<claimer>.recovering``
        first, so no other worker takes them too (nor those of a claimer that died recovering them)."""
        claimed = []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return []
        for name in names:
            if name.endswith(CLAIMED):
                claimer = name[:-len(CLAIMED)].rsplit(".", 1)[-1]
                if process_running(claimer):
                    continue
                original = name[:-len(CLAIMED)].rsplit(".", 1)[0]
            elif name.endswith(SUFFIX) and not name.startswith(self._prefix + "-") and not process_running(name):
                original = name
            else:
                continue
            target = self.directory / f"{original}.{this_process()}{CLAIMED}"
            try:
                os.rename(self.directory / name, target)
            except FileNotFoundError:
                continue  # another worker claimed it first
            claimed.append(target)
        return claimed


def read_lines(path: Path) -> list[bytes]:
    """The whole lines of a journal file (a last line without its newline was torn by the kill)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1]:
        log.warning("events: skipped a torn last line in %s", path.name)
    return [line + b"\n" for line in lines[:-1] if line]
