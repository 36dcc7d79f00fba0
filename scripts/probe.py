"""Is a dependency reachable with the settings of api.env? For the setup scripts.

    python scripts/probe.py redis [--wait SECONDS]   exit 0 ok, 1 unreachable, 2 Redis older than 7
    python scripts/probe.py mysql [--wait SECONDS]   exit 0 ok, 1 unreachable, 2 app user cannot log in
    python scripts/probe.py redis-address            prints "host port" of REDIS_URL
"""

import argparse
import os
import sys
import time
from urllib.parse import urlparse

import mysql.connector
import redis

from ml_api.config import Config, load_config

OK, UNREACHABLE, WRONG = 0, 1, 2


def probe_redis(config: Config) -> int:
    client = redis.Redis.from_url(config.redis_url, socket_timeout=1, socket_connect_timeout=1)
    try:
        version = client.info("server")["redis_version"]
    except redis.RedisError:
        return UNREACHABLE
    return OK if int(version.split(".")[0]) >= 7 else WRONG


def probe_mysql(config: Config) -> int:
    s = config.mysql
    try:
        mysql.connector.connect(host=s.host, port=s.port, user=s.user, password=s.password,
                                database=s.database, connection_timeout=2).close()
        return OK
    except mysql.connector.errors.ProgrammingError:  # access denied, unknown database
        return WRONG
    except mysql.connector.Error:
        return UNREACHABLE


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=["redis", "mysql", "redis-address"])
    parser.add_argument("--wait", type=float, default=0, help="keep trying while unreachable, up to this long")
    args = parser.parse_args()
    config = load_config(os.environ)
    if args.target == "redis-address":
        url = urlparse(config.redis_url)
        print(url.hostname or "127.0.0.1", url.port or 6379)
        return OK
    probe = probe_redis if args.target == "redis" else probe_mysql
    deadline = time.monotonic() + args.wait
    while True:
        result = probe(config)
        if result != UNREACHABLE or time.monotonic() >= deadline:
            return result
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
