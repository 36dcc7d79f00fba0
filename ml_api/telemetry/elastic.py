"""Elasticsearch side of the event pipeline: install the index templates, reconcile exposures.

    python -m ml_api.telemetry.elastic setup
    python -m ml_api.telemetry.elastic reconcile --experiment NAME
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import mysql.connector
from elasticsearch import Elasticsearch

from ml_api.config import PROJECT_ROOT

LOGSTASH_DIR = PROJECT_ROOT / "logstash"
TEMPLATE_PATH = LOGSTASH_DIR / "index-template.json"
POLICY_PATH = LOGSTASH_DIR / "ilm-policy.json"
TEMPLATE_NAME = "abtest-events"
POLICY_NAME = "abtest-events"
INDEX_PATTERN = "abtest-events-*"
# Events Elasticsearch refused, read back from Logstash's dead letter queue (logstash/pipeline/abtest-dlq.conf).
DLQ_TEMPLATE_PATH = LOGSTASH_DIR / "dlq-index-template.json"
DLQ_TEMPLATE_NAME = "abtest-dlq"
DLQ_INDEX_PATTERN = "abtest-dlq-*"
TEMPLATES = {TEMPLATE_NAME: TEMPLATE_PATH, DLQ_TEMPLATE_NAME: DLQ_TEMPLATE_PATH}

# Exposures are the first assignment of each user: one row per user in `assignments`.
EXPOSURES_SQL = (
    "SELECT a.variant, COUNT(*) FROM assignments a"
    " JOIN experiments e ON e.id = a.experiment_id"
    " WHERE e.name = %s GROUP BY a.variant"
)
COMPOSITE_PAGE_SIZE = 10_000


@dataclass(frozen=True)
class Settings:
    """What this CLI needs to reach Elasticsearch and MySQL."""

    elasticsearch_url: str
    retention_days: int
    mysql_host: str
    mysql_port: int
    mysql_database: str
    mysql_user: str
    mysql_password: str


@dataclass(frozen=True)
class VariantCount:
    """Exposed users of one variant, as MySQL and Elasticsearch count them."""

    variant: str
    mysql: int
    elasticsearch: int

    @property
    def matches(self) -> bool:
        """Whether both stores count the same users."""
        return self.mysql == self.elasticsearch


def settings_from_env(environ: Mapping[str, str]) -> Settings:
    """Read the settings from environment variables, with the api.env defaults."""
    retention_days = int(environ.get("EVENT_RETENTION_DAYS", "30"))
    if retention_days < 1:
        raise ValueError(f"EVENT_RETENTION_DAYS must be at least 1, got {retention_days}")
    return Settings(
        elasticsearch_url=environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9200"),
        retention_days=retention_days,
        mysql_host=environ.get("MYSQL_HOST", "127.0.0.1"),
        mysql_port=int(environ.get("MYSQL_PORT", "3306")),
        mysql_database=environ.get("MYSQL_DATABASE", "abtest"),
        mysql_user=environ.get("MYSQL_USER", "abtest"),
        mysql_password=environ.get("MYSQL_PASSWORD", ""),
    )


def load_template(name: str = TEMPLATE_NAME) -> dict[str, Any]:
    """A composable index template by name (TEMPLATES): the daily event indices' by default."""
    return json.loads(TEMPLATES[name].read_text(encoding="utf-8"))


def load_policy(retention_days: int) -> dict[str, Any]:
    """The lifecycle policy, deleting an index `retention_days` days after it was created."""
    policy = json.loads(POLICY_PATH.read_text(encoding="utf-8"))["policy"]
    policy["phases"]["delete"]["min_age"] = f"{retention_days}d"
    return policy


def setup(es: Elasticsearch, retention_days: int) -> None:
    """Install the lifecycle policy, then the index templates (events, dead letters); PUTs, so safe to repeat."""
    es.cluster.health(wait_for_status="yellow", timeout="60s")
    es.ilm.put_lifecycle(name=POLICY_NAME, policy=load_policy(retention_days))
    for name in TEMPLATES:
        template = load_template(name)
        es.indices.put_index_template(
            name=name,
            index_patterns=template["index_patterns"],
            priority=template["priority"],
            version=template["version"],
            meta=template["_meta"],
            template=template["template"],
        )


def _composite_pages(es: Elasticsearch, experiment: str) -> Iterator[list[dict[str, Any]]]:
    """Pages of (variant, user.hash) pairs seen in predict events of one experiment."""
    query = {
        "bool": {
            "filter": [
                {"term": {"event.action": "predict"}},
                {"term": {"experiment.name": experiment}},
                {"term": {"experiment.in_experiment": True}},
            ]
        }
    }
    composite: dict[str, Any] = {
        "size": COMPOSITE_PAGE_SIZE,
        "sources": [
            {"variant": {"terms": {"field": "experiment.variant"}}},
            {"user": {"terms": {"field": "user.hash"}}},
        ],
    }
    while True:
        response = es.search(
            index=INDEX_PATTERN, size=0, query=query, aggs={"pairs": {"composite": composite}}
        )
        if "aggregations" not in response:  # no event index exists yet
            return
        pairs = response["aggregations"]["pairs"]
        if not pairs["buckets"]:
            return
        yield pairs["buckets"]
        if "after_key" not in pairs:
            return
        composite = {**composite, "after": pairs["after_key"]}


def elasticsearch_exposures(es: Elasticsearch, experiment: str) -> dict[str, int]:
    """Distinct users per variant among the experiment's in-experiment predict events.

    A composite aggregation pages through every (variant, user) pair, so the count is
    exact; a cardinality aggregation would be an estimate and flag false mismatches.
    """
    counts: dict[str, int] = {}
    for page in _composite_pages(es, experiment):
        for bucket in page:
            variant = bucket["key"]["variant"]
            counts[variant] = counts.get(variant, 0) + 1
    return counts


def mysql_exposures(connection: Any, experiment: str) -> dict[str, int]:
    """Users per variant in the durable assignment record."""
    cursor = connection.cursor()
    try:
        cursor.execute(EXPOSURES_SQL, (experiment,))
        return {str(variant): int(count) for variant, count in cursor.fetchall()}
    finally:
        cursor.close()


def compare(mysql_counts: Mapping[str, int], es_counts: Mapping[str, int]) -> list[VariantCount]:
    """One row per variant seen by either store, in variant order."""
    variants = sorted(set(mysql_counts) | set(es_counts))
    return [VariantCount(v, mysql_counts.get(v, 0), es_counts.get(v, 0)) for v in variants]


def format_table(rows: Sequence[VariantCount]) -> str:
    """The comparison as a fixed-width text table."""
    lines = [("variant", "mysql", "elasticsearch", "difference", "")]
    for row in rows:
        lines.append((
            row.variant,
            str(row.mysql),
            str(row.elasticsearch),
            f"{row.elasticsearch - row.mysql:+d}",
            "" if row.matches else "MISMATCH",
        ))
    widths = [max(len(line[column]) for line in lines) for column in range(len(lines[0]))]
    formatted = []
    for line in lines:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:4], widths[1:4])]
        cells.append(line[4])
        formatted.append("  ".join(cells).rstrip())
    return "\n".join(formatted)


def reconcile(es: Elasticsearch, connection: Any, experiment: str, out: TextIO) -> bool:
    """Print exposures per variant from both stores; True when they agree."""
    rows = compare(mysql_exposures(connection, experiment), elasticsearch_exposures(es, experiment))
    if not rows:
        print(f"no exposures recorded for experiment {experiment!r}", file=out)
        return True
    print(format_table(rows), file=out)
    return all(row.matches for row in rows)


def connect_mysql(settings: Settings) -> Any:
    """A MySQL connection with the application's credentials."""
    return mysql.connector.connect(
        host=settings.mysql_host,
        port=settings.mysql_port,
        database=settings.mysql_database,
        user=settings.mysql_user,
        password=settings.mysql_password,
        connection_timeout=10,
    )


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="python -m ml_api.telemetry.elastic", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="install the ILM policy and the index template (idempotent)")
    reconcile_parser = commands.add_parser(
        "reconcile", help="compare exposures per variant in Elasticsearch with MySQL"
    )
    reconcile_parser.add_argument("--experiment", required=True, help="experiment name")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one command; exit status 1 means the stores disagree."""
    args = build_parser().parse_args(argv)
    settings = settings_from_env(os.environ if environ is None else environ)
    es = Elasticsearch(settings.elasticsearch_url, request_timeout=30, max_retries=3, retry_on_timeout=True)
    try:
        if args.command == "setup":
            setup(es, settings.retention_days)
            print(f"installed ILM policy {POLICY_NAME!r} ({settings.retention_days}d) and index templates"
                  f" {TEMPLATE_NAME!r} for {INDEX_PATTERN}, {DLQ_TEMPLATE_NAME!r} for {DLQ_INDEX_PATTERN}")
            return 0
        connection = connect_mysql(settings)
        try:
            return 0 if reconcile(es, connection, args.experiment, sys.stdout) else 1
        finally:
            connection.close()
    finally:
        es.close()


if __name__ == "__main__":
    sys.exit(main())
