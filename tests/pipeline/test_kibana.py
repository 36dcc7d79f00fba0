"""The Kibana saved objects are a well-formed export, and the import step posts them."""

from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import ModuleType
from typing import Any

import pytest

from .project import ROOT

NDJSON = ROOT / "kibana" / "saved-objects.ndjson"
PANELS = {
    "Requests per variant over time",
    "Exposed users per variant over time, with the configured weights",
    "Error rate per variant over time",
    "Fallback rate per variant over time",
    "Latency p50, p95 and p99 per variant over time",
    "Conversions per metric and variant over time",
    "Shadow agreement over time",
    "Traffic allocation steps and pauses",
    "Events Elasticsearch refused (dead letter queue)",
    "Distribution of predictions per variant",
    "Errors and fallbacks",
    "Experiment changes",
}


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_saved_objects", ROOT / "kibana" / "build_saved_objects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _by_id(saved_objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(obj["type"], obj["id"]): obj for obj in saved_objects}


def test_the_committed_file_is_what_the_builder_writes() -> None:
    assert NDJSON.read_text(encoding="utf-8") == _builder().ndjson(), "run: python kibana/build_saved_objects.py"


def test_every_line_is_a_json_object_and_export_details_count_them() -> None:
    lines = NDJSON.read_text(encoding="utf-8").splitlines()
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(obj, dict) for obj in objects)
    *saved, details = objects
    assert details["exportedCount"] == len(saved) and details["missingRefCount"] == 0


def test_objects_carry_the_export_metadata_kibana_migrates_from(saved_objects) -> None:
    ids = [(obj["type"], obj["id"]) for obj in saved_objects]
    assert len(ids) == len(set(ids))
    for obj in saved_objects:
        assert {"attributes", "id", "type", "references", "coreMigrationVersion", "typeMigrationVersion"} <= set(obj)


def test_data_views_have_fixed_ids_and_the_time_field(saved_objects) -> None:
    views = {obj["id"]: obj["attributes"] for obj in saved_objects if obj["type"] == "index-pattern"}
    assert {view_id: view["title"] for view_id, view in views.items()} == {"abtest-events": "abtest-events-*",
                                                                          "abtest-dlq": "abtest-dlq-*"}
    assert {view["timeFieldName"] for view in views.values()} == {"@timestamp"}


# Kibana 8.8 and later export coreMigrationVersion and typeMigrationVersion (not the older migrationVersion
# map) and migrate an object up from the version it names; 9.x imports the same. These are the versions of
# each type's last migration before 8.9 (a lens, dashboard or search exported by Kibana 8.9-8.19 carries them).
TYPE_MIGRATION_VERSIONS = {"index-pattern": "8.0.0", "lens": "8.9.0", "search": "10.5.0", "dashboard": "10.2.0"}


def test_migration_versions_are_those_kibana_8_and_9_migrate_from(saved_objects) -> None:
    for obj in saved_objects:
        assert "migrationVersion" not in obj, "the pre-8.8 field; Kibana would read it instead"
        major, minor, _ = map(int, obj["coreMigrationVersion"].split("."))
        assert (major, minor) >= (8, 8), obj["id"]
        assert obj["typeMigrationVersion"] == TYPE_MIGRATION_VERSIONS[obj["type"]], obj["id"]
        assert obj["managed"] is False


LENS_COLUMN_KEYS = {"label", "dataType", "isBucketed", "operationType", "scale"}
FIELD_OPERATIONS = {"date_histogram", "terms", "count", "unique_count", "average", "max", "percentile"}
XY_DATA_LAYER_KEYS = {"layerId", "layerType", "seriesType", "accessors", "xAccessor"}


def test_lens_state_is_complete(saved_objects) -> None:
    """What Lens reads when it opens a saved visualization: no part it would have to invent."""
    for lens in (obj for obj in saved_objects if obj["type"] == "lens"):
        attributes = lens["attributes"]
        assert attributes["visualizationType"] == "lnsXY" and attributes["title"], lens["id"]
        state = attributes["state"]
        assert {"datasourceStates", "visualization", "query", "filters"} <= set(state)
        layers = state["datasourceStates"]["formBased"]["layers"]
        for layer in layers.values():
            assert {"columnOrder", "columns", "incompleteColumns"} <= set(layer) and not layer["incompleteColumns"]
            for column in layer["columns"].values():
                assert LENS_COLUMN_KEYS <= set(column), column
                if column["operationType"] in FIELD_OPERATIONS:
                    assert column["sourceField"] and "params" in column, column
        visualization = state["visualization"]
        assert {"preferredSeriesType", "legend", "layers"} <= set(visualization)
        data_layers = [layer for layer in visualization["layers"] if layer["layerType"] == "data"]
        assert {layer["layerId"] for layer in data_layers} == set(layers), "every data layer is drawn, once"
        for layer in data_layers:
            assert XY_DATA_LAYER_KEYS <= set(layer), lens["id"]
            assert {y["forAccessor"] for y in layer.get("yConfig", [])} <= set(layer["accessors"])


def test_every_reference_resolves_within_the_file(saved_objects) -> None:
    known = _by_id(saved_objects)
    for obj in saved_objects:
        for reference in obj["references"]:
            assert (reference["type"], reference["id"]) in known, f"{obj['id']} -> {reference}"


def test_lens_layers_reference_the_data_view_and_their_own_columns(saved_objects) -> None:
    for lens in (obj for obj in saved_objects if obj["type"] == "lens"):
        state = lens["attributes"]["state"]
        references = {ref["name"]: ref for ref in lens["references"]}
        layers = state["datasourceStates"]["formBased"]["layers"]
        for layer_id, layer in layers.items():
            reference = references[f"indexpattern-datasource-layer-{layer_id}"]
            assert reference["type"] == "index-pattern"
            assert sorted(layer["columnOrder"]) == sorted(layer["columns"])
            for column in layer["columns"].values():
                order_by = column.get("params", {}).get("orderBy", {})
                if order_by.get("type") == "column":
                    assert order_by["columnId"] in layer["columns"]
                assert set(column.get("references", [])) <= set(layer["columns"]), "a formula's parts are there"
                if column["operationType"] == "formula":
                    assert not column["params"]["isFormulaBroken"] and column["params"]["formula"]
        for vis_layer in state["visualization"]["layers"]:
            if vis_layer.get("layerType") == "annotations":
                reference = references[f"xy-visualization-layer-{vis_layer['layerId']}"]
                assert reference["type"] == "index-pattern" and vis_layer["annotations"], lens["id"]
                continue
            columns = layers[vis_layer["layerId"]]["columns"]
            used = [*vis_layer.get("accessors", []), *vis_layer.get("metrics", []), *vis_layer.get("primaryGroups", [])]
            used += [vis_layer[key] for key in ("xAccessor", "splitAccessor") if key in vis_layer]
            assert used and set(used) <= set(columns), lens["id"]


def test_every_time_chart_marks_every_change_and_breach(saved_objects) -> None:
    """Annotations: one marker per experiment_change (who: change.actor, what: change.action and summary)."""
    charts = [obj for obj in saved_objects if obj["type"] == "lens"
              and any(c["operationType"] == "date_histogram" for layer in
                      obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values()
                      for c in layer["columns"].values())]
    assert len(charts) >= 8
    for chart in charts:
        (layer,) = [v for v in chart["attributes"]["state"]["visualization"]["layers"]
                    if v.get("layerType") == "annotations"]
        by_query = {a["filter"]["query"]: a for a in layer["annotations"]}
        change = by_query['event.action : "experiment_change"']
        assert change["textField"] == "change.action" and {"change.actor", "change.summary"} <= set(change["extraFields"])
        assert 'event.action : "guardrail_breach"' in by_query
        assert layer["ignoreGlobalFilters"] is False, "the experiment control filters the markers too"


def _lens(saved_objects, lens_id: str) -> dict[str, Any]:
    (lens,) = [obj for obj in saved_objects if obj["type"] == "lens" and obj["id"] == lens_id]
    return lens


def test_exposures_have_the_configured_weights_beside_them(saved_objects) -> None:
    """Each variant's share of exposed users, and its configured share on the same 0-100 % scale."""
    lens = _lens(saved_objects, "abtest-exposures")
    state = lens["attributes"]["state"]
    layers = state["datasourceStates"]["formBased"]["layers"]
    (users_layer, weights_layer) = [v for v in state["visualization"]["layers"] if v["layerType"] == "data"]
    assert users_layer["seriesType"] == "bar_percentage_stacked"
    users = layers[users_layer["layerId"]]["columns"]
    (users_metric,) = users_layer["accessors"]
    assert (users[users_metric]["operationType"], users[users_metric]["sourceField"]) == ("unique_count", "user.hash")
    weights = layers[weights_layer["layerId"]]["columns"]
    (weight,) = weights_layer["accessors"]
    assert weights[weight]["sourceField"] == "experiment.variant_weight"
    assert weights[weight]["params"]["format"]["id"] == "percent"
    assert weights_layer["yConfig"] == [{"forAccessor": weight, "axisMode": "right"}]
    for axis in ("yLeftExtent", "yRightExtent"):
        assert state["visualization"][axis] == {"mode": "custom", "lowerBound": 0, "upperBound": 1}
    split = {layer["splitAccessor"]: layers[layer["layerId"]]["columns"][layer["splitAccessor"]]["sourceField"]
             for layer in (users_layer, weights_layer)}
    assert set(split.values()) == {"experiment.variant"}
    assert 'experiment.in_experiment : true' in state["query"]["query"]


def test_conversions_are_split_per_metric_and_variant(saved_objects) -> None:
    state = _lens(saved_objects, "abtest-outcome-rate")["attributes"]["state"]
    (layer,) = [v for v in state["visualization"]["layers"] if v["layerType"] == "data"]
    split = state["datasourceStates"]["formBased"]["layers"][layer["layerId"]]["columns"][layer["splitAccessor"]]
    assert (split["sourceField"], split["params"]["secondaryFields"]) == ("feedback.metric", ["experiment.variant"])
    assert split["params"]["parentFormat"] == {"id": "multi_terms"}
    assert state["query"]["query"] == 'event.action : "feedback"'


def test_the_dead_letter_panel_counts_refused_events_of_every_experiment(saved_objects) -> None:
    lens = _lens(saved_objects, "abtest-dead-letters")
    (data_layer_reference,) = [ref for ref in lens["references"]
                               if ref["name"].startswith("indexpattern-datasource-layer-")]
    assert data_layer_reference["id"] == "abtest-dlq"
    (layer,) = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values()
    assert layer["ignoreGlobalFilters"] is True, "the experiment control's field is not indexed for refused events"
    assert {c["operationType"] for c in layer["columns"].values()} == {"date_histogram", "terms", "count"}
    (search,) = [obj for obj in saved_objects if obj["type"] == "search" and obj["id"] == "abtest-refused-events"]
    assert search["references"][0]["id"] == "abtest-dlq" and "dlq.reason" in search["attributes"]["columns"]


def test_the_dashboard_control_picks_one_experiment(saved_objects) -> None:
    (dashboard,) = [obj for obj in saved_objects if obj["type"] == "dashboard"]
    group = dashboard["attributes"]["controlGroupInput"]
    ((control_id, control),) = json.loads(group["panelsJSON"]).items()
    explicit = control["explicitInput"]
    assert control["type"] == "optionsListControl" and explicit["id"] == control_id
    assert explicit["fieldName"] == "experiment.name" and explicit["singleSelect"] is True
    references = {ref["name"]: ref for ref in dashboard["references"]}
    assert references[explicit["dataViewRefName"]] == {"id": "abtest-events", "name": explicit["dataViewRefName"],
                                                        "type": "index-pattern"}
    json.loads(group["ignoreParentSettingsJSON"])


def test_saved_searches_reference_the_data_view(saved_objects) -> None:
    for search in (obj for obj in saved_objects if obj["type"] == "search"):
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        (reference,) = search["references"]
        assert reference["name"] == source["indexRefName"] and reference["type"] == "index-pattern"
        assert search["attributes"]["columns"]


def test_dashboard_shows_every_panel_by_reference(saved_objects) -> None:
    (dashboard,) = [obj for obj in saved_objects if obj["type"] == "dashboard"]
    assert dashboard["attributes"]["title"] == "A/B experiment overview"
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    references = {ref["name"]: ref for ref in dashboard["references"]}
    known = _by_id(saved_objects)
    titles = set()
    for panel in panels:
        reference = references[f"{panel['panelIndex']}:{panel['panelRefName']}"]
        assert reference["type"] == panel["type"] and panel["type"] in ("lens", "search")
        titles.add(known[(panel["type"], reference["id"])]["attributes"]["title"])
        assert panel["gridData"]["i"] == panel["panelIndex"]
        assert panel["gridData"]["x"] + panel["gridData"]["w"] <= 48
    assert titles == PANELS
    json.loads(dashboard["attributes"]["optionsJSON"])
    json.loads(dashboard["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


# --- kibana/import_saved_objects.py ---------------------------------------------

@pytest.fixture(scope="module")
def importer() -> ModuleType:
    """The import script, loaded as a module."""
    spec = importlib.util.spec_from_file_location("import_saved_objects", ROOT / "kibana" / "import_saved_objects.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeKibana(BaseHTTPRequestHandler):
    """Answers the status and import APIs; records what the import received."""

    status_level = "available"
    import_answer: dict[str, Any] = {"success": True, "successCount": 9}
    received: list[tuple[str, Any, bytes]] = []

    def do_GET(self) -> None:  # noqa: N802
        self._reply({"status": {"overall": {"level": self.status_level}}})

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers, body))
        self._reply(self.import_answer)

    def _reply(self, answer: dict[str, Any]) -> None:
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def kibana() -> Iterator[str]:
    """A fake Kibana on a free loopback port, reset for each test."""
    FakeKibana.received = []
    FakeKibana.import_answer = {"success": True, "successCount": 9}
    server = HTTPServer(("127.0.0.1", 0), FakeKibana)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_import_posts_the_ndjson_as_multipart_with_the_xsrf_header(importer, kibana) -> None:
    assert importer.main([], {"KIBANA_URL": kibana}) == 0
    ((path, headers, body),) = FakeKibana.received
    assert path == "/api/saved_objects/_import?overwrite=true"
    assert headers["kbn-xsrf"] == "true"
    content_type, _, boundary = headers["Content-Type"].partition("; boundary=")
    assert content_type == "multipart/form-data"
    assert body.startswith(f"--{boundary}\r\n".encode()) and body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b'name="file"; filename="saved-objects.ndjson"' in body
    assert NDJSON.read_bytes() in body


def test_import_fails_when_kibana_reports_errors(importer, kibana) -> None:
    FakeKibana.import_answer = {"success": False, "errors": [{"id": "abtest-latency", "error": {"type": "conflict"}}]}
    assert importer.main([], {"KIBANA_URL": kibana}) == 1


def test_waiting_gives_up_after_the_timeout(importer, monkeypatch) -> None:
    monkeypatch.setattr(importer, "kibana_available", lambda base_url: False)
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    with pytest.raises(TimeoutError):
        importer.wait_for_kibana("http://kibana:5601", timeout_s=30, interval_s=5, clock=lambda: now[0], sleep=sleep)
    assert sleeps == [5.0] * 6


def test_kibana_that_is_still_starting_is_not_available(importer, kibana) -> None:
    FakeKibana.status_level = "unavailable"
    try:
        assert importer.kibana_available(kibana) is False
    finally:
        FakeKibana.status_level = "available"
    assert importer.kibana_available(kibana) is True
