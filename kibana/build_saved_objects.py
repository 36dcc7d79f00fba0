"""Write kibana/saved-objects.ndjson from the panel definitions below (the file is generated: edit here).

    python kibana/build_saved_objects.py

Every Lens panel is built by the same few functions, so panels differ only in what they
show: the query, the metric columns and the split. Every time chart carries the same
annotation layer: one marker per ``experiment_change`` event (who and what, from
``change.actor`` and ``change.summary``) and per ``guardrail_breach``. The dashboard has an
options-list control on ``experiment.name`` so it shows one experiment at a time, and two
saved searches (errors and fallbacks; every change). Two data views: the gateway's events
(``abtest-events-*``) and the events Elasticsearch refused (``abtest-dlq-*``, written by the
dead-letter-queue pipeline); the refused events' panel ignores the experiment control, since
the fields of a refused event are what failed. tests/pipeline checks that the committed file
is what this script writes, and every field against the index template of its data view.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "saved-objects.ndjson"
DATA_VIEW = "abtest-events"
DLQ_DATA_VIEW = "abtest-dlq"
DATA_VIEWS = {  # id: (title, the index pattern; name)
    DATA_VIEW: ("abtest-events-*", "A/B experiment events"),
    DLQ_DATA_VIEW: ("abtest-dlq-*", "A/B events Elasticsearch refused (dead letter queue)"),
}
CORE_MIGRATION = "8.8.0"
LAYER = "layer1"
WEIGHTS = "weights"
ANNOTATIONS = "changes"
CONTROL = "experiment-control"
Json = dict[str, Any]

PREDICTS = 'event.action : "predict"'
TERMS_DEFAULTS = {"exclude": [], "excludeIsRegex": False, "include": [], "includeIsRegex": False,
                  "otherBucket": True, "parentFormat": {"id": "terms"}}
PERCENT = {"id": "percent", "params": {"decimals": 1}}


# --- columns ------------------------------------------------------------------------

def time_column() -> Json:
    return {"dataType": "date", "isBucketed": True, "label": "@timestamp", "operationType": "date_histogram",
            "params": {"dropPartials": False, "includeEmptyRows": True, "interval": "auto"},
            "scale": "interval", "sourceField": "@timestamp"}


def terms_column(field: str, label: str, size: int = 10, missing: bool = False, then_by: tuple[str, ...] = ()) -> Json:
    """Top values of ``field``; with ``then_by``, of the combination (a multi-terms split, e.g. metric › variant)."""
    params = {**TERMS_DEFAULTS, "missingBucket": missing, "orderBy": {"fallback": False, "type": "alphabetical"},
              "orderDirection": "asc", "size": size}
    if then_by:
        params |= {"secondaryFields": list(then_by), "parentFormat": {"id": "multi_terms"}}
    return {"customLabel": True, "dataType": "string", "isBucketed": True, "label": label, "operationType": "terms",
            "params": params, "scale": "ordinal", "sourceField": field}


def metric_column(operation: str, label: str, field: str = "___records___", kql: str | None = None,
                  **params: Any) -> Json:
    column = {"customLabel": True, "dataType": "number", "isBucketed": False, "label": label,
              "operationType": operation, "params": {"emptyAsNull": True, **params}, "scale": "ratio",
              "sourceField": field}
    if kql:
        column["filter"] = {"language": "kuery", "query": kql}
    return column


def rate_columns(column_id: str, label: str, numerator_kql: str, denominator_kql: str | None = None) -> Json:
    """A Lens formula ``count(kql=numerator) / count(kql=denominator)`` with the helper columns Kibana
    persists for it (two filtered counts and the math column that divides them)."""
    denominator = f"count(kql='{denominator_kql}')" if denominator_kql else "count()"
    formula = f"count(kql='{numerator_kql}') / {denominator}"
    part = f"Part of {label}"
    numerator_id, denominator_id, math_id = (f"{column_id}X{n}" for n in range(3))
    return {
        numerator_id: metric_column("count", part, kql=numerator_kql, emptyAsNull=False),
        denominator_id: metric_column("count", part, kql=denominator_kql, emptyAsNull=False),
        math_id: {"customLabel": True, "dataType": "number", "isBucketed": False, "label": part,
                  "operationType": "math", "params": {"tinymathAst": {
                      "type": "function", "name": "divide", "args": [numerator_id, denominator_id],
                      "location": {"min": 0, "max": len(formula)}, "text": formula}},
                  "references": [numerator_id, denominator_id], "scale": "ratio"},
        column_id: {"customLabel": True, "dataType": "number", "isBucketed": False, "label": label,
                    "operationType": "formula", "params": {"formula": formula, "isFormulaBroken": False,
                                                           "format": PERCENT},
                    "references": [math_id], "scale": "ratio"},
    }


# --- Lens objects ---------------------------------------------------------------------

def annotation_layer() -> Json:
    """Markers on every time chart: each experiment change (who, what) and each guardrail breach."""
    def marker(marker_id: str, label: str, kql: str, text_field: str, extra: list[str], color: str, icon: str) -> Json:
        return {"type": "query", "id": marker_id, "label": label, "key": {"type": "point_in_time"},
                "timeField": "@timestamp", "filter": {"type": "kibana_query", "language": "kuery", "query": kql},
                "textVisibility": True, "textField": text_field, "extraFields": extra, "color": color,
                "icon": icon, "lineStyle": "dashed", "lineWidth": 1, "isHidden": False}

    return {"layerId": ANNOTATIONS, "layerType": "annotations", "persistanceType": "byValue",
            "ignoreGlobalFilters": False, "annotations": [
                marker("experiment-change", "Experiment change", 'event.action : "experiment_change"',
                       "change.action", ["change.actor", "change.summary"], "#6092C0", "triangle"),
                marker("guardrail-breach", "Guardrail breach", 'event.action : "guardrail_breach"',
                       "guardrail.name", ["experiment.variant", "error.message"], "#E7664C", "alert"),
            ]}


def data_layer(columns: Json, data_view: str = DATA_VIEW, ignore_global_filters: bool = False) -> Json:
    """One Lens data layer: its data view and its columns (in order)."""
    return {"data_view": data_view, "columns": columns, "ignore_global_filters": ignore_global_filters}


def lens(lens_id: str, title: str, description: str, query: str, layers: dict[str, Json], visualization: Json,
         visualization_type: str = "lnsXY", annotated: bool = False) -> Json:
    """One Lens object with its data layers (``data_layer`` by layer id), and the change markers if ``annotated``."""
    references = [{"id": layer["data_view"], "name": f"indexpattern-datasource-layer-{layer_id}", "type": "index-pattern"}
                  for layer_id, layer in layers.items()]
    if annotated:
        visualization = {**visualization, "layers": [*visualization["layers"], annotation_layer()]}
        references.append({"id": DATA_VIEW, "name": f"xy-visualization-layer-{ANNOTATIONS}", "type": "index-pattern"})
    persisted = {layer_id: {"columnOrder": list(layer["columns"]), "columns": layer["columns"], "incompleteColumns": {},
                            "sampling": 1, **({"ignoreGlobalFilters": True} if layer["ignore_global_filters"] else {})}
                 for layer_id, layer in layers.items()}
    state = {"adHocDataViews": {}, "filters": [], "internalReferences": [],
             "query": {"language": "kuery", "query": query},
             "datasourceStates": {"formBased": {"layers": persisted}},
             "visualization": visualization}
    return {"attributes": {"description": description, "state": state, "title": title,
                           "visualizationType": visualization_type},
            "coreMigrationVersion": CORE_MIGRATION, "id": lens_id, "managed": False, "references": references,
            "type": "lens", "typeMigrationVersion": "8.9.0"}


def xy_layer(accessors: list[str], series: str = "line", x: str = "time", split: str | None = "variant",
             layer_id: str = LAYER, **extra: Any) -> Json:
    """The chart side of one data layer: which columns are x, y and the split, drawn as ``series``."""
    layer = {"accessors": accessors, "layerId": layer_id, "layerType": "data", "position": "top", "seriesType": series,
             "showGridlines": False, "xAccessor": x, **extra}
    if split:
        layer["splitAccessor"] = split
    return layer


def xy(accessors: list[str], series: str = "line", x: str = "time", split: str | None = "variant",
       more_layers: tuple[Json, ...] = (), **axes: Any) -> Json:
    both = {"x": True, "yLeft": True, "yRight": True}
    return {"axisTitlesVisibilitySettings": both, "fittingFunction": "None", "gridlinesVisibilitySettings": both,
            "labelsOrientation": {"x": 0, "yLeft": 0, "yRight": 0},
            "layers": [xy_layer(accessors, series, x, split), *more_layers],
            "legend": {"isVisible": True, "position": "right"}, "preferredSeriesType": series,
            "tickLabelsVisibilitySettings": both, "valueLabels": "hide", **axes}


def shown_columns(metrics: Json) -> list[str]:
    """The metric columns a chart draws: a formula's helper columns (its parts and its math) stay off it."""
    return [c for c, column in metrics.items() if column["operationType"] != "math" and not
            any(c in other.get("references", []) for other in metrics.values() if other["operationType"] == "math")]


def over_time(lens_id: str, title: str, description: str, query: str, metrics: Json, series: str = "line",
              split: Json | None = None, data_view: str = DATA_VIEW, ignore_global_filters: bool = False) -> Json:
    """A time chart per value of ``split`` (default: the variant), with the change markers."""
    split = split or terms_column("experiment.variant", "Variant", missing=True)
    columns = {"time": time_column(), "variant": split, **metrics}
    return lens(lens_id, title, description, query,
                {LAYER: data_layer(columns, data_view, ignore_global_filters)},
                xy(shown_columns(metrics), series), annotated=True)


def exposures_with_weights() -> Json:
    """Each variant's share of the exposed users per time bucket (stacked to 100 %), and beside it, on the
    right axis with the same 0-100 % scale, the share its configured weight gives it (experiment.variant_weight)."""
    users = {"time": time_column(), "variant": terms_column("experiment.variant", "Variant", missing=True),
             "users": metric_column("unique_count", "Exposed users", "user.hash")}
    weights = {"time": time_column(), "variant": terms_column("experiment.variant", "Variant"),
               "weight": metric_column("max", "Configured weight", "experiment.variant_weight", format=PERCENT)}
    weight_lines = xy_layer(["weight"], "line", layer_id=WEIGHTS,
                            yConfig=[{"forAccessor": "weight", "axisMode": "right"}])
    full_scale = {"mode": "custom", "lowerBound": 0, "upperBound": 1}
    return lens("abtest-exposures", "Exposed users per variant over time, with the configured weights",
                "Bars: each variant's share of the distinct users exposed in the time bucket (user.hash). Lines, right"
                " axis: the share the variant's weight gives it (the largest in the bucket when the weights changed)."
                " Bars that stay away from their line mean the split is not what was configured; the results page"
                " gives the sample-ratio-mismatch test.",
                'event.action : "predict" and experiment.in_experiment : true',
                {LAYER: data_layer(users), WEIGHTS: data_layer(weights)},
                xy(["users"], "bar_percentage_stacked", more_layers=(weight_lines,), yRightExtent=full_scale,
                   yLeftExtent=full_scale),
                annotated=True)


def panels() -> list[Json]:
    latency = {f"p{p}": metric_column("percentile", f"p{p} latency", "latency.total_ms", percentile=p,
                                      format={"id": "number", "params": {"decimals": 1, "suffix": " ms"}})
               for p in (50, 95, 99)}
    for column in latency.values():
        del column["params"]["emptyAsNull"]
    return [
        over_time("abtest-requests-over-time", "Requests per variant over time",
                  "Predict requests per minute (whatever the bucket size), stacked by variant.", PREDICTS,
                  {"requests": {**metric_column("count", "Requests per minute"), "timeScale": "m"}},
                  series="bar_stacked"),
        over_time("abtest-error-rate", "Error rate per variant over time",
                  "Failed /predict and /feedback requests over all of them, per variant (requests that failed"
                  " before a variant was known are the (missing value) line).",
                  'event.action : ("predict" or "feedback" or "error")',
                  rate_columns("rate", "Error rate", 'event.outcome : "failure"')),
        over_time("abtest-fallback-rate", "Fallback rate per variant over time",
                  "Predictions the control answered because the variant's model failed or was too slow.", PREDICTS,
                  rate_columns("rate", "Fallback rate", "experiment.fallback : true")),
        over_time("abtest-latency", "Latency p50, p95 and p99 per variant over time",
                  "Total request latency (latency.total_ms) percentiles per variant and time bucket.", PREDICTS,
                  latency),
        exposures_with_weights(),
        over_time("abtest-outcome-rate", "Conversions per metric and variant over time",
                  "Mean feedback.outcome per metric (feedback.metric) and variant: the conversion rate for 1/0"
                  " outcomes, the mean value for numbers (click a metric in the legend to see it alone). Not a"
                  " test of significance: the results page gives that.", 'event.action : "feedback"',
                  {"outcome": metric_column("average", "Mean outcome", "feedback.outcome")},
                  split=terms_column("feedback.metric", "Metric › variant", size=20,
                                     then_by=("experiment.variant",))),
        over_time("abtest-shadow-agreement", "Shadow agreement over time",
                  "Share of mirrored requests where the shadow model predicted the served label, per shadow model.",
                  'event.action : "shadow_predict"',
                  rate_columns("rate", "Agreement", "shadow.agrees : true", "shadow.agrees : *"),
                  split=terms_column("model.name", "Shadow model", missing=True)),
        over_time("abtest-rollout", "Traffic allocation steps and pauses",
                  "Experiment changes per time bucket by action (ramp_advance, guardrail_pause, stop_variation,"
                  " start, pause, set_weights, ...); the markers name who and what.",
                  'event.action : "experiment_change"', {"changes": metric_column("count", "Changes")},
                  series="bar_stacked", split=terms_column("change.action", "Action", missing=True)),
        over_time("abtest-dead-letters", "Events Elasticsearch refused (dead letter queue)",
                  "Events of every experiment that Elasticsearch refused to index (abtest-dlq-*), per time bucket"
                  " and Elasticsearch error type; the experiment control does not apply (a refused event's own"
                  " fields are what failed). Anything here is a bug: open the saved search \"Refused events\".",
                  "", {"refused": metric_column("count", "Refused events")}, series="bar_stacked",
                  split=terms_column("dlq.error.type", "Error type", missing=True),
                  data_view=DLQ_DATA_VIEW, ignore_global_filters=True),
        lens("abtest-prediction-distribution", "Distribution of predictions per variant",
             "Share of each predicted label per variant.", PREDICTS,
             {LAYER: data_layer({"variant": terms_column("experiment.variant", "Variant"),
                                 "label": terms_column("prediction.label", "Predicted label"),
                                 "requests": metric_column("count", "Requests")})},
             xy(["requests"], "bar_percentage_stacked", x="variant", split="label")),
    ]


# --- saved searches, data view, dashboard ------------------------------------------------

def saved_search(search_id: str, title: str, description: str, query: str, columns: list[str],
                 data_view: str = DATA_VIEW) -> Json:
    source = {"query": {"query": query, "language": "kuery"}, "filter": [],
              "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    return {"attributes": {"title": title, "description": description, "columns": columns,
                           "sort": [["@timestamp", "desc"]], "grid": {}, "hideChart": False,
                           "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(source)}},
            "coreMigrationVersion": CORE_MIGRATION, "id": search_id, "managed": False,
            "references": [{"id": data_view, "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
                            "type": "index-pattern"}],
            "type": "search", "typeMigrationVersion": "10.5.0"}


def searches() -> list[Json]:
    return [
        saved_search("abtest-errors-and-fallbacks", "Errors and fallbacks",
                     "Every failed request, model load error, shadow failure and fallback, newest first.",
                     'event.outcome : "failure" or experiment.fallback : true',
                     ["event.action", "experiment.name", "experiment.variant", "model.name", "model.version",
                      "http.response.status_code", "url.path", "error.type", "error.message", "latency.total_ms",
                      "http.request.id", "host.name"]),
        saved_search("abtest-experiment-changes", "Experiment changes",
                     "Every change of an experiment: who, what, and the definition before and after.",
                     'event.action : "experiment_change" or event.action : "guardrail_breach"',
                     ["experiment.name", "change.actor", "change.action", "change.summary", "guardrail.name",
                      "error.message"]),
        # In Discover, not on the dashboard: a saved search there would follow the experiment control,
        # and a refused event's experiment.name is not indexed.
        saved_search("abtest-refused-events", "Refused events",
                     "Events Elasticsearch refused to index, newest first: what they were, the error type and"
                     " Elasticsearch's whole answer (dlq.reason); the event itself is in the document's source.",
                     "", ["dlq.event.action", "dlq.experiment.name", "dlq.error.type", "dlq.error.reason",
                          "dlq.entry_time", "dlq.reason"], data_view=DLQ_DATA_VIEW),
    ]


def data_view(view_id: str) -> Json:
    title, name = DATA_VIEWS[view_id]
    return {"attributes": {"fieldAttrs": "{}", "fieldFormatMap": "{}", "fields": "[]", "name": name,
                           "runtimeFieldMap": "{}", "sourceFilters": "[]", "timeFieldName": "@timestamp",
                           "title": title},
            "coreMigrationVersion": CORE_MIGRATION, "id": view_id, "managed": False, "references": [],
            "type": "index-pattern", "typeMigrationVersion": "8.0.0"}


def control_group() -> tuple[Json, Json]:
    """The options-list control on experiment.name (one experiment at a time) and its data view reference."""
    reference_name = f"controlGroup_{CONTROL}:optionsListDataView"
    control = {CONTROL: {"order": 0, "width": "medium", "grow": True, "type": "optionsListControl",
                         "explicitInput": {"id": CONTROL, "fieldName": "experiment.name", "title": "Experiment",
                                           "singleSelect": True, "searchTechnique": "prefix",
                                           "selectedOptions": [], "dataViewRefName": reference_name}}}
    ignore = {"ignoreFilters": False, "ignoreQuery": False, "ignoreTimerange": False, "ignoreValidations": False}
    group = {"chainingSystem": "HIERARCHICAL", "controlStyle": "oneLine", "showApplySelections": False,
             "ignoreParentSettingsJSON": json.dumps(ignore), "panelsJSON": json.dumps(control)}
    return group, {"id": DATA_VIEW, "name": reference_name, "type": "index-pattern"}


LAYOUT = [  # (object id, type, width, height): filled in rows of 48 columns
    ("abtest-requests-over-time", "lens", 24, 12), ("abtest-exposures", "lens", 24, 12),
    ("abtest-error-rate", "lens", 24, 12), ("abtest-fallback-rate", "lens", 24, 12),
    ("abtest-latency", "lens", 24, 12), ("abtest-outcome-rate", "lens", 24, 12),
    ("abtest-shadow-agreement", "lens", 24, 12), ("abtest-rollout", "lens", 24, 12),
    ("abtest-dead-letters", "lens", 24, 12), ("abtest-prediction-distribution", "lens", 24, 12),
    ("abtest-experiment-changes", "search", 48, 12), ("abtest-errors-and-fallbacks", "search", 48, 14),
]


def dashboard() -> Json:
    grid, references, x, y, row = [], [], 0, 0, 0
    for index, (object_id, object_type, width, height) in enumerate(LAYOUT, start=1):
        if x + width > 48:
            x, y, row = 0, y + row, 0
        grid.append({"type": object_type, "gridData": {"x": x, "y": y, "w": width, "h": height, "i": str(index)},
                     "panelIndex": str(index), "embeddableConfig": {"enhancements": {}},
                     "panelRefName": f"panel_{index}"})
        references.append({"id": object_id, "name": f"{index}:panel_{index}", "type": object_type})
        x, row = x + width, max(row, height)
    group, control_reference = control_group()
    options = {"useMargins": True, "syncColors": True, "syncCursor": True, "syncTooltips": False,
               "hidePanelTitles": False}
    return {"attributes": {
                "description": "One experiment at a time (the Experiment control): traffic, exposures against"
                               " the configured weights, errors, fallbacks, latency, conversions per metric, shadow"
                               " agreement and every change, per variant and over time, from the gateway's events"
                               " (abtest-events-*); and the events Elasticsearch refused (abtest-dlq-*).",
                "controlGroupInput": group,
                "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps({"query": {"query": "", "language": "kuery"},
                                                                          "filter": []})},
                "optionsJSON": json.dumps(options), "panelsJSON": json.dumps(grid),
                "refreshInterval": {"pause": False, "value": 10000}, "timeFrom": "now-1h", "timeRestore": True,
                "timeTo": "now", "title": "A/B experiment overview", "version": 1},
            "coreMigrationVersion": CORE_MIGRATION, "id": "abtest-overview", "managed": False,
            "references": [*references, control_reference], "type": "dashboard", "typeMigrationVersion": "10.2.0"}


def saved_objects() -> list[Json]:
    """Every object, in import order (what a panel references comes before it), then the export summary."""
    objects = [*map(data_view, DATA_VIEWS), *panels(), *searches(), dashboard()]
    summary = {"excludedObjects": [], "excludedObjectsCount": 0, "exportedCount": len(objects),
               "missingRefCount": 0, "missingReferences": []}
    return [*objects, summary]


def ndjson() -> str:
    return "".join(json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n" for obj in saved_objects())


if __name__ == "__main__":
    OUT.write_text(ndjson(), encoding="utf-8")
    print(f"wrote {OUT}")
