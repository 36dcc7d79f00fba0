"""`python -m ml_api.telemetry.elastic`: settings, idempotent setup and exposure reconciliation, on fakes."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import Any

import pytest

from ml_api.telemetry import elastic


class FakeElasticsearch:
    """Records calls; answers searches with the given composite-aggregation pages."""

    def __init__(self, pages: list[dict[str, Any]] | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.pages = list(pages or [])
        self.cluster = SimpleNamespace(health=self._recorder("cluster.health"))
        self.ilm = SimpleNamespace(put_lifecycle=self._recorder("ilm.put_lifecycle"))
        self.indices = SimpleNamespace(put_index_template=self._recorder("indices.put_index_template"))

    def _recorder(self, name: str):
        def call(**kwargs: Any) -> dict[str, Any]:
            self.calls.append((name, kwargs))
            return {"acknowledged": True}
        return call

    def search(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("search", kwargs))
        return self.pages.pop(0)

    def close(self) -> None:
        self.calls.append(("close", {}))


class FakeConnection:
    """A DB-API connection whose cursor returns fixed rows and records the query."""

    def __init__(self, rows: list[tuple[str, int]]) -> None:
        self.rows, self.executed, self.closed = rows, [], False

    def cursor(self) -> "FakeConnection":
        return self

    def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        self.executed.append((sql, params))

    def fetchall(self) -> list[tuple[str, int]]:
        return self.rows

    def close(self) -> None:
        self.closed = True


def page(pairs: list[tuple[str, str]], after: bool = True) -> dict[str, Any]:
    """One composite-aggregation answer over (variant, user.hash) pairs."""
    buckets = [{"key": {"variant": v, "user": u}, "doc_count": 1} for v, u in pairs]
    aggregation: dict[str, Any] = {"buckets": buckets}
    if after and buckets:
        aggregation["after_key"] = buckets[-1]["key"]
    return {"hits": {"hits": []}, "aggregations": {"pairs": aggregation}}


def test_settings_default_to_a_local_stack() -> None:
    settings = elastic.settings_from_env({})
    assert settings.elasticsearch_url == "http://127.0.0.1:9200"
    assert settings.retention_days == 30
    assert (settings.mysql_host, settings.mysql_port, settings.mysql_database) == ("127.0.0.1", 3306, "abtest")


def test_settings_come_from_the_environment() -> None:
    settings = elastic.settings_from_env({
        "ELASTICSEARCH_URL": "http://elasticsearch:9200", "EVENT_RETENTION_DAYS": "7",
        "MYSQL_HOST": "mysql", "MYSQL_PORT": "3307", "MYSQL_DATABASE": "db",
        "MYSQL_USER": "u", "MYSQL_PASSWORD": "p",
    })
    assert settings == elastic.Settings("http://elasticsearch:9200", 7, "mysql", 3307, "db", "u", "p")


def test_retention_must_be_positive() -> None:
    with pytest.raises(ValueError, match="EVENT_RETENTION_DAYS"):
        elastic.settings_from_env({"EVENT_RETENTION_DAYS": "0"})


def test_setup_puts_policy_then_templates_and_repeats_identically() -> None:
    es = FakeElasticsearch()
    elastic.setup(es, retention_days=7)
    first = list(es.calls)
    elastic.setup(es, retention_days=7)
    assert es.calls == first + first
    names = [name for name, _ in first]
    assert names == ["cluster.health", "ilm.put_lifecycle", "indices.put_index_template", "indices.put_index_template"]
    policy = first[1][1]
    assert policy["name"] == elastic.POLICY_NAME
    assert policy["policy"]["phases"]["delete"]["min_age"] == "7d"
    events, dead_letters = first[2][1], first[3][1]
    assert (events["name"], events["index_patterns"]) == (elastic.TEMPLATE_NAME, [elastic.INDEX_PATTERN])
    assert (dead_letters["name"], dead_letters["index_patterns"]) == (elastic.DLQ_TEMPLATE_NAME,
                                                                      [elastic.DLQ_INDEX_PATTERN])
    for template in (events, dead_letters):
        assert template["template"]["settings"]["index"]["lifecycle"]["name"] == elastic.POLICY_NAME
    assert events["template"]["mappings"]["properties"]["experiment"]["properties"]["variant"] == {"type": "keyword"}
    assert dead_letters["template"]["mappings"]["properties"]["dlq"]["properties"]["error"]["properties"]["type"] == {
        "type": "keyword"}


def test_elasticsearch_exposures_page_through_every_user() -> None:
    es = FakeElasticsearch([
        page([("control", "a"), ("control", "b"), ("variation", "a")]),
        page([("variation", "c"), ("variation", "d")]),
        page([]),
    ])
    assert elastic.elasticsearch_exposures(es, "iris-models") == {"control": 2, "variation": 3}
    searches = [kwargs for name, kwargs in es.calls if name == "search"]
    assert len(searches) == 3
    assert "after" not in searches[0]["aggs"]["pairs"]["composite"]
    assert searches[1]["aggs"]["pairs"]["composite"]["after"] == {"variant": "variation", "user": "a"}
    filters = searches[0]["query"]["bool"]["filter"]
    assert {"term": {"event.action": "predict"}} in filters
    assert {"term": {"experiment.name": "iris-models"}} in filters
    assert {"term": {"experiment.in_experiment": True}} in filters


def test_no_event_index_yet_means_no_exposures() -> None:
    es = FakeElasticsearch([{"hits": {"hits": []}}])
    assert elastic.elasticsearch_exposures(es, "iris-models") == {}


def test_mysql_query_is_parameterized() -> None:
    connection = FakeConnection([("control", 3), ("variation", 1)])
    assert elastic.mysql_exposures(connection, "x'; DROP TABLE assignments; --") == {"control": 3, "variation": 1}
    ((sql, params),) = connection.executed
    assert "%s" in sql and "DROP" not in sql
    assert params == ("x'; DROP TABLE assignments; --",)


def test_reconcile_prints_a_table_and_flags_a_mismatch() -> None:
    es = FakeElasticsearch([page([("control", "a"), ("variation", "b")], after=False)])
    out = io.StringIO()
    assert elastic.reconcile(es, FakeConnection([("control", 1), ("variation", 2)]), "iris-models", out) is False
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["variant", "mysql", "elasticsearch", "difference"]
    assert lines[1].split() == ["control", "1", "1", "+0"]
    assert lines[2].split() == ["variation", "2", "1", "-1", "MISMATCH"]


def test_reconcile_agrees_when_counts_match() -> None:
    es = FakeElasticsearch([page([("control", "a"), ("variation", "b")], after=False)])
    assert elastic.reconcile(es, FakeConnection([("control", 1), ("variation", 1)]), "e", io.StringIO()) is True


def test_a_variant_only_one_store_knows_is_a_mismatch() -> None:
    rows = elastic.compare({"control": 1}, {"control": 1, "ghost": 4})
    assert [(r.variant, r.mysql, r.elasticsearch, r.matches) for r in rows] == [
        ("control", 1, 1, True), ("ghost", 0, 4, False)]


@pytest.mark.parametrize(("mysql_rows", "status"), [([("control", 1)], 0), ([("control", 2)], 1)])
def test_main_exit_status_says_whether_the_stores_agree(monkeypatch, capsys, mysql_rows, status) -> None:
    es = FakeElasticsearch([page([("control", "a")], after=False)])
    connection = FakeConnection(mysql_rows)
    monkeypatch.setattr(elastic, "Elasticsearch", lambda *args, **kwargs: es)
    monkeypatch.setattr(elastic, "connect_mysql", lambda settings: connection)
    assert elastic.main(["reconcile", "--experiment", "iris-models"], environ={}) == status
    assert connection.closed and es.calls[-1] == ("close", {})
    assert "control" in capsys.readouterr().out


def test_main_setup(monkeypatch, capsys) -> None:
    es = FakeElasticsearch()
    monkeypatch.setattr(elastic, "Elasticsearch", lambda *args, **kwargs: es)
    assert elastic.main(["setup"], environ={"EVENT_RETENTION_DAYS": "14"}) == 0
    assert ("ilm.put_lifecycle", {"name": elastic.POLICY_NAME, "policy": elastic.load_policy(14)}) in es.calls
    assert "14d" in capsys.readouterr().out


def test_reconcile_requires_an_experiment() -> None:
    with pytest.raises(SystemExit) as exit_info:
        elastic.main(["reconcile"], environ={})
    assert exit_info.value.code == 2


class FakeElasticsearchHttp(BaseHTTPRequestHandler):
    """Speaks just enough Elasticsearch HTTP for the real client; records each request."""

    received: list[tuple[str, str, dict[str, Any] | None]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.received.append((self.command, self.path, body))
        payload = json.dumps({"acknowledged": True, "status": "green"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.elasticsearch+json;compatible-with=9")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = _answer  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


def test_setup_sends_the_policy_and_template_bodies_elasticsearch_expects() -> None:
    from elasticsearch import Elasticsearch

    FakeElasticsearchHttp.received = []
    server = HTTPServer(("127.0.0.1", 0), FakeElasticsearchHttp)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        client = Elasticsearch(f"http://127.0.0.1:{server.server_port}")
        elastic.setup(client, retention_days=30)
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    (health, policy, *templates) = FakeElasticsearchHttp.received
    assert health[0] == "GET" and health[1].startswith("/_cluster/health?") and "wait_for_status=yellow" in health[1]
    assert policy[:2] == ("PUT", f"/_ilm/policy/{elastic.POLICY_NAME}")
    assert policy[2] == {"policy": elastic.load_policy(30)}
    assert [(method, path) for method, path, _ in templates] == [
        ("PUT", f"/_index_template/{elastic.TEMPLATE_NAME}"), ("PUT", f"/_index_template/{elastic.DLQ_TEMPLATE_NAME}")]
    assert [body for _, _, body in templates] == [elastic.load_template(), elastic.load_template(elastic.DLQ_TEMPLATE_NAME)]
