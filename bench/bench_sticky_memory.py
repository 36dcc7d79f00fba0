"""Redis memory per sticky assignment: one key per user against hash shards, same run.

    python bench/bench_sticky_memory.py [--users 1000000] [--user-id-format user-{}]

Starts a private ``redis-server`` on a free loopback port (the shared one is untouched),
writes ``--users`` first assignments (50/50 over two variants, by the project's hash)
through each store's own ``claim`` (pipelined, so the data is exactly what the gateway
writes), and reports ``used_memory`` growth per assignment. The server and its directory
are removed at the end.
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

from assigner import RedisAssignmentStore, bucket
from assigner.sharded_store import DEFAULT_SHARDS, ShardedRedisAssignmentStore
from scripts.local_redis import local_redis

BATCH = 10_000
EXPERIMENT_ID = 1
TARGET_BYTES = 16


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
    before = client.info("memory")["used_memory"]
    started = time.perf_counter()
    fill(client, make_store, users, ids)
    seconds = time.perf_counter() - started
    grown = client.info("memory")["used_memory"] - before
    keys = client.dbsize()
    per_user = grown / users
    print(f"{name:<34}{keys:>10}{grown / 2**20:>12.1f}{per_user:>12.1f}   {', '.join(encodings(client))}"
          f"  (filled in {seconds:.0f} s)")
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
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--user-id-format", default="user-{}", help="user ids; {} is a running number")
    args = parser.parse_args(argv)
    with private_redis() as client:
        info = client.info("server")
        listpack = client.config_get("hash-max-listpack-*")
        print(f"redis {info['redis_version']}, {listpack}; {args.users:,} users like "
              f"{args.user_id_format.format(123456)!r}, prefix 'abtest'\n")
        print(f"{'layout':<34}{'keys':>10}{'MiB':>12}{'bytes/user':>12}   encodings")
        naive = measure(client, "keys: SET key variant NX GET", lambda c: RedisAssignmentStore(c, "abtest"),
                        args.users, args.user_id_format)
        sharded = measure(client, f"sharded: {DEFAULT_SHARDS} hashes/experiment",
                          lambda c: ShardedRedisAssignmentStore(c, "abtest"), args.users, args.user_id_format)
    print(f"\nsharded uses {sharded / naive:.0%} of the one-key-per-user memory; "
          f"target <= {TARGET_BYTES} bytes/assignment: {'met' if sharded <= TARGET_BYTES else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
