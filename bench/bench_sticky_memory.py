"""Redis memory per sticky assignment: one key per user against hash shards, same run.

    python bench/bench_sticky_memory.py [--users 1000000 10000000] [--keys-up-to 1000000]

Starts a private ``redis-server`` on a free loopback port (the shared one is untouched),
writes ``--users`` first assignments (50/50 over two variants, by the project's hash)
through each store's own ``claim`` (pipelined, so the data is exactly what the gateway
writes; the confirmation that follows a claim rewrites one byte and changes no size), and
reports ``used_memory`` growth per assignment and the server's CPU per claim, for the
sharded layout at every size and for one key per user up to ``--keys-up-to`` users (10
million such keys take a gigabyte). The server and its directory are removed at the end.
About 2 minutes at a million users; ten million took an hour on a loaded 2-core VM
(the server's Lua scripts, not the client, set the pace).
"""

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as `python bench/<script>.py`

from assigner import RedisAssignmentStore, bucket  # noqa: E402
from assigner.sharded_store import DEFAULT_SHARDS, ShardedRedisAssignmentStore  # noqa: E402
from scripts.local_redis import local_redis  # noqa: E402

BATCH = 10_000
EXPERIMENT_ID = 1
TARGET_BYTES = 12


@contextmanager
def private_redis() -> Iterator[redis.Redis]:
    """A redis-server with default settings and no persistence, on a free loopback port."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-sticky-"))
    try:
        with local_redis(workdir) as url:
            yield redis.Redis.from_url(url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def fill(client: redis.Redis, make_store: Callable[[redis.client.Pipeline], object], users: int, ids: str) -> None:
    """``users`` first claims through the store, batched in pipelines."""
    pipe = client.pipeline(transaction=False)
    store = make_store(pipe)  # the store's own claim, queued instead of sent one by one
    for start in range(0, users, BATCH):
        for n in range(start, min(start + BATCH, users)):
            user_id = ids.format(n)
            store.claim(EXPERIMENT_ID, user_id, "control" if bucket("bench", user_id) < 5000 else "variation")
        pipe.execute()


def measure(client: redis.Redis, name: str, make_store, users: int, ids: str) -> float:
    """Bytes of ``used_memory`` per stored assignment for one layout."""
    client.flushall()
    client.config_resetstat()
    before = client.info("memory")["used_memory"]
    started = time.perf_counter()
    fill(client, make_store, users, ids)
    seconds = time.perf_counter() - started
    grown = client.info("memory")["used_memory"] - before
    keys = client.dbsize()
    per_user = grown / users
    calls = client.info("commandstats")
    usec = max(calls.get(f"cmdstat_{command}", {}).get("usec_per_call", 0) for command in ("set", "evalsha"))
    print(f"{name:<36}{users:>12,}{keys:>10,}{grown / 2**20:>10.1f}{per_user:>12.1f}{usec:>10.1f}   "
          f"{', '.join(encodings(client))}  (filled in {seconds:.0f} s)", flush=True)
    return per_user


def encodings(client: redis.Redis, sample: int = 20_000) -> list[str]:
    """The Redis encodings of (up to ``sample``) keys: listpack stays compact, hashtable does not."""
    keys = []
    for key in client.scan_iter(count=1000):
        keys.append(key)
        if len(keys) >= sample:
            break
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.object("encoding", key)
    return sorted({encoding.decode() for encoding in pipe.execute()})
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1_000_000, 10_000_000],
                        help="experiment sizes to fill, one after the other (default: 1M and 10M)")
    parser.add_argument("--keys-up-to", type=int, default=1_000_000,
                        help="measure one key per user only at sizes up to this (default 1M)")
    parser.add_argument("--user-id-format", default="user-{}", help="user ids; {} is a running number")
    args = parser.parse_args(argv)
    results: dict[int, float] = {}
    with private_redis() as client:
        info = client.info("server")
        listpack = client.config_get("hash-max-listpack-*")
        print(f"redis {info['redis_version']}, {listpack}; users like "
              f"{args.user_id_format.format(123456)!r}, prefix 'abtest'\n")
        print(f"{'layout':<36}{'users':>12}{'keys':>10}{'MiB':>10}{'bytes/user':>12}{'cpu µs':>10}   encodings")
        for users in args.users:
            if users <= args.keys_up_to:
                measure(client, "keys: SET key variant NX GET", lambda c: RedisAssignmentStore(c, "abtest"),
                        users, args.user_id_format)
            results[users] = measure(client, f"sharded: {DEFAULT_SHARDS} hashes/experiment",
                                     lambda c: ShardedRedisAssignmentStore(c, "abtest"), users, args.user_id_format)
    print("\ncpu µs: the server's CPU per claim, averaged over the fill (INFO commandstats)")
    for users, per_user in results.items():
        verdict = "met" if per_user <= TARGET_BYTES else "MISSED"
        print(f"sharded at {users:,} users: {per_user:.1f} bytes/assignment, target <= {TARGET_BYTES}: {verdict}")
    return 0 if all(per_user <= TARGET_BYTES for per_user in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
