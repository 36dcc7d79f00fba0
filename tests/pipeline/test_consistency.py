"""Schema, index template, pipeline, Kibana objects, compose and api.env name the same things."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest

from ml_api.telemetry import elastic, events

from . import logstash_config
from .project import ROOT, leaf_fields

NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
AGGREGATABLE = NUMERIC | {"keyword", "boolean", "date", "flattened"}
# Fields Logstash itself may add; the gateway never sends them.
PIPELINE_ONLY_FIELDS = {"tags"}
# JSON schema type -> mapping types that index it faithfully.
SCHEMA_TO_MAPPING = {
    "string": {"keyword"},
    "integer": {"long", "integer", "short"},
    "number": {"float", "double", "scaled_float", "half_float"},
    "boolean": {"boolean"},
    "object": {"flattened"},  # a definition snapshot: its keys are searchable, none is mapped on its own
}
# Lens column dataType -> mapping types it can come from.
LENS_TO_MAPPING = {"string": {"keyword"}, "number": NUMERIC, "boolean": {"boolean"}, "date": {"date"}}
# Lens metrics that only work on a numeric field (unique_count, count work on any).
NUMERIC_METRICS = {"average", "sum", "min", "max", "median", "percentile", "percentile_rank", "standard_deviation"}
KQL_FIELD = re.compile(r"([A-Za-z_@][\w.@]*)\s*:")


def schema_type(definition: dict[str, Any]) -> set[str]:
    """The JSON types a schema leaf allows (enum and const leaves are strings here; an array, its
    items' type: Elasticsearch indexes an array as several values of one field)."""
    if definition.get("type") == "array":
        return schema_type(definition["items"])
    if "type" in definition:
        kinds = definition["type"]
        return set(kinds) if isinstance(kinds, list) else {kinds}
    values = definition.get("enum", [definition.get("const")])
    assert all(isinstance(v, str) for v in values), definition
    return {"string"}


def test_schema_and_template_have_the_same_fields(event_schema, template_fields) -> None:
    schema_fields = set(leaf_fields(event_schema["properties"]))
    assert schema_fields - set(template_fields) == set(), "in the schema, not mapped"
    assert set(template_fields) - schema_fields - PIPELINE_ONLY_FIELDS == set(), "mapped, not in the schema"


def test_template_types_fit_the_schema_types(event_schema, template_fields) -> None:
    for path, definition in leaf_fields(event_schema["properties"]).items():
        mapped = template_fields[path]["type"]
        if path == "@timestamp":
            assert mapped == "date"
        elif schema_type(definition) == {"string", "number"}:
            assert mapped == "keyword", f"{path}: a label of either type is one keyword field"
        else:
            (kind,) = schema_type(definition)
            assert mapped in SCHEMA_TO_MAPPING[kind], f"{path}: {kind} mapped as {mapped}"


def test_ecs_fields_are_there_with_ecs_types(event_schema, template_fields, examples) -> None:
    """ECS's own fields keep ECS's names and types (custom fields keep theirs: dashboards use them)."""
    ecs_types = {"ecs.version": "keyword", "event.kind": "keyword", "event.category": "keyword",
                 "event.type": "keyword", "event.duration": "long", "event.outcome": "keyword",
                 "event.action": "keyword", "event.dataset": "keyword", "event.id": "keyword"}
    assert {path: template_fields[path]["type"] for path in ecs_types} == ecs_types
    assert "ecs" in event_schema["required"]
    assert {"kind", "category", "type"} <= set(event_schema["properties"]["event"]["required"])
    for name, example in examples.items():
        assert example["ecs"]["version"] == events.ECS["version"], name
    assert examples["predict"]["event"]["duration"] == round(examples["predict"]["latency"]["total_ms"] * 1e6)


def test_template_maps_nothing_as_text(template_fields) -> None:
    assert {p: f["type"] for p, f in template_fields.items() if f["type"] not in AGGREGATABLE} == {}


def test_template_is_not_dynamic_and_uses_the_ilm_policy(index_template) -> None:
    mappings = index_template["template"]["mappings"]
    assert mappings["dynamic"] in (False, "false", "strict")
    assert index_template["template"]["settings"]["index"]["lifecycle"]["name"] == elastic.POLICY_NAME


def test_ilm_policy_deletes_after_the_configured_retention() -> None:
    policy = elastic.load_policy(12)
    assert policy["phases"]["delete"]["min_age"] == "12d"
    assert "delete" in policy["phases"]["delete"]["actions"]
    assert elastic.load_policy(30)["phases"]["delete"]["min_age"] == "30d"


def _lens_objects(saved_objects):
    return [obj for obj in saved_objects if obj["type"] == "lens"]


def _layer_views(lens: dict[str, Any]) -> dict[str, str]:
    """Layer id -> the data view id it reads (data layers and annotation layers alike)."""
    prefixes = ("indexpattern-datasource-layer-", "xy-visualization-layer-")
    return {ref["name"].removeprefix(prefix): ref["id"] for ref in lens["references"]
            for prefix in prefixes if ref["name"].startswith(prefix)}


def _lens_fields(lens: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(data view id, field, the kind of field Lens needs there: "any" when only aggregatable) for every
    field a Lens object uses: columns, their filters, split fields, the query, the markers."""
    state = lens["attributes"]["state"]
    views = _layer_views(lens)
    fields: list[tuple[str, str, str]] = []
    for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
        view = views[layer_id]
        fields += [(view, field, "query") for field in KQL_FIELD.findall(state["query"]["query"])]
        for column in layer["columns"].values():
            field = column.get("sourceField", "___records___")
            if field == "___records___":
                pass
            elif column["isBucketed"]:
                fields += [(view, f, column["dataType"]) for f in [field, *column["params"].get("secondaryFields", [])]]
            else:
                fields.append((view, field, "number" if column["operationType"] in NUMERIC_METRICS else "any"))
            if column.get("filter"):
                fields += [(view, f, "query") for f in KQL_FIELD.findall(column["filter"]["query"])]
    for layer in state["visualization"].get("layers", []):
        for annotation in layer.get("annotations", []):  # change markers: their query and the fields they show
            view = views[layer["layerId"]]
            fields += [(view, f, "query") for f in KQL_FIELD.findall(annotation["filter"]["query"])]
            fields += [(view, f, "any") for f in [annotation["timeField"], annotation["textField"],
                                                  *annotation.get("extraFields", [])]]
    return fields


def test_every_field_kibana_uses_is_mapped_and_aggregatable(saved_objects, fields_by_data_view) -> None:
    lenses = _lens_objects(saved_objects)
    assert lenses
    for lens in lenses:
        for view, field, data_type in _lens_fields(lens):
            title = lens["attributes"]["title"]
            mapped_fields = fields_by_data_view[view]
            assert field in mapped_fields, f"{title}: {field} is not in the index template of {view}"
            mapped = mapped_fields[field]["type"]
            assert mapped in AGGREGATABLE, f"{title}: {field} is {mapped}"
            if data_type not in ("query", "any"):
                assert mapped in LENS_TO_MAPPING[data_type], f"{title}: {field} is {mapped}, Lens says {data_type}"


def test_the_new_fields_panels_use_are_in_the_schema_and_the_gateway_sends_the_weight(saved_objects, event_schema,
                                                                                      examples) -> None:
    """Weights beside the exposures and conversions per metric come from fields of the events themselves."""
    used = {field for lens in _lens_objects(saved_objects) for _, field, _ in _lens_fields(lens)}
    assert {"experiment.variant_weight", "feedback.metric"} <= used
    schema_fields = leaf_fields(event_schema["properties"])
    assert schema_fields["feedback.metric"]["type"] == "string"
    assert (schema_fields["experiment.variant_weight"]["minimum"], schema_fields["experiment.variant_weight"]["maximum"]) == (0, 1)
    assert 0 < examples["predict"]["experiment"]["variant_weight"] <= 1


def test_every_field_a_saved_search_or_the_control_uses_is_mapped(saved_objects, fields_by_data_view,
                                                                  template_fields) -> None:
    for search in (obj for obj in saved_objects if obj["type"] == "search"):
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        (reference,) = search["references"]
        used = set(search["attributes"]["columns"]) | set(KQL_FIELD.findall(source["query"]["query"]))
        assert used - set(fields_by_data_view[reference["id"]]) == set(), search["id"]
    (dashboard,) = [obj for obj in saved_objects if obj["type"] == "dashboard"]
    for control in json.loads(dashboard["attributes"]["controlGroupInput"]["panelsJSON"]).values():
        field = control["explicitInput"]["fieldName"]
        assert template_fields[field]["type"] == "keyword", f"an options list needs a keyword field: {field}"


def test_data_view_time_field_is_a_date(saved_objects, fields_by_data_view) -> None:
    views = [obj for obj in saved_objects if obj["type"] == "index-pattern"]
    assert {view["id"] for view in views} == set(fields_by_data_view)
    for view in views:
        assert fields_by_data_view[view["id"]][view["attributes"]["timeFieldName"]]["type"] == "date"


def _daily_index(pipeline_file: str) -> str:
    """The index a pipeline's one output writes today."""
    (output,) = logstash_config.parse((ROOT / "logstash" / "pipeline" / pipeline_file).read_text())["output"]
    return output.settings["index"].replace("%{+YYYY.MM.dd}", "2026.11.23")


@pytest.mark.parametrize(("pipeline_file", "view_id", "template_name"), [
    ("abtest.conf", "abtest-events", elastic.TEMPLATE_NAME), ("abtest-dlq.conf", "abtest-dlq", elastic.DLQ_TEMPLATE_NAME)])
def test_index_names_templates_data_views_and_cli_agree(saved_objects, pipeline_file, view_id, template_name) -> None:
    patterns = elastic.load_template(template_name)["index_patterns"]
    assert any(fnmatch.fnmatchcase(_daily_index(pipeline_file), p) for p in patterns)
    (data_view,) = [obj for obj in saved_objects if obj["type"] == "index-pattern" and obj["id"] == view_id]
    assert [data_view["attributes"]["title"]] == patterns
    assert {elastic.TEMPLATE_NAME: elastic.INDEX_PATTERN, elastic.DLQ_TEMPLATE_NAME: elastic.DLQ_INDEX_PATTERN}[
        template_name] == data_view["attributes"]["title"]


# --- docker-compose.yml against api.env -------------------------------------------

def _container_ports(service: dict[str, Any]) -> set[int]:
    """Container-side port of every published port ("127.0.0.1:8000:8000" -> 8000)."""
    return {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {k: str(v) for k, v in environment.items()}


def _bind_port(bind: str) -> int:
    host, _, port = bind.rpartition(":")
    assert host and not bind.startswith("unix:"), f"{bind}: the proxy container reaches gunicorn over TCP"
    return int(port)


def test_published_ports_match_api_env(compose, api_env) -> None:
    services = compose["services"]
    assert int(api_env["API_PORT"]) in _container_ports(services["nginx"])
    assert "ports" not in services["api"], "clients reach the gateway through nginx only"
    assert int(api_env["LOGSTASH_PORT"]) in _container_ports(services["logstash"])


def test_nginx_renders_the_shared_template_from_api_env_and_proxies_to_api(compose, api_env) -> None:
    services = compose["services"]
    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:")
    assert nginx["env_file"] in ("api.env", ["api.env"])
    assert "./nginx/gateway.conf.template:/etc/nginx/templates/default.conf.template:ro" in nginx["volumes"]
    environment = _environment(nginx)
    assert environment["API_HOST"] == "0.0.0.0"
    upstream_host, _, upstream_port = environment["PROXY_UPSTREAM"].rpartition(":")
    assert upstream_host == "api"
    assert int(upstream_port) == _bind_port(_environment(services["api"])["GUNICORN_BIND"])
    template = (ROOT / "nginx" / "gateway.conf.template").read_text(encoding="utf-8")
    placeholders = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", template))
    assert placeholders <= set(api_env) | set(environment), "a placeholder the container has no value for"
    assert all(re.match(environment["NGINX_ENVSUBST_FILTER"], name) for name in placeholders)
    assert nginx["depends_on"]["api"]["condition"] == "service_healthy"
    # "$$" is Compose's escape: the container's shell, not Compose on the host, reads API_PORT.
    assert "$${API_PORT}/health" in " ".join(nginx["healthcheck"]["test"])


def test_nginx_template_enforces_api_env_limits(api_env) -> None:
    template = (ROOT / "nginx" / "gateway.conf.template").read_text(encoding="utf-8")
    assert re.search(r"^\s*listen \$\{API_HOST\}:\$\{API_PORT\};", template, re.MULTILINE)
    assert re.search(r"^\s*client_max_body_size \$\{MAX_BODY_BYTES\};", template, re.MULTILINE)
    batch = re.search(r"location = /predict/batch \{(.*?)\n    \}", template, re.DOTALL).group(1)
    assert re.search(r"^\s*client_max_body_size \$\{MAX_BATCH_BODY_BYTES\};", batch, re.MULTILINE)
    assert re.search(r"^\s*client_header_timeout \$\{PROXY_CLIENT_HEADER_TIMEOUT\}s;", template, re.MULTILINE)
    assert re.search(r"^\s*client_body_timeout \$\{PROXY_CLIENT_BODY_TIMEOUT\}s;", template, re.MULTILINE)
    assert re.search(r"^\s*proxy_request_buffering on;", template, re.MULTILINE)


def test_rendered_nginx_config_agrees_with_api_env(api_env, tmp_path) -> None:
    from ml_api.config import load_config
    from scripts import nginx_conf

    nginx_conf.render(load_config({}), tmp_path)
    rendered = (tmp_path / "gateway.conf").read_text(encoding="utf-8")
    assert f"listen {api_env['API_HOST']}:{api_env['API_PORT']};" in rendered
    assert f"client_max_body_size {api_env['MAX_BODY_BYTES']};" in rendered
    assert f"client_max_body_size {api_env['MAX_BATCH_BODY_BYTES']};" in rendered
    assert "${" not in rendered
    gunicorn_bind = api_env["GUNICORN_BIND"].removeprefix("unix:")
    assert re.search(rf"server unix:\S*/{re.escape(gunicorn_bind)};", rendered)


def test_gunicorn_keeps_connections_open_longer_than_nginx_reuses_them() -> None:
    """nginx must drop an idle upstream connection before gunicorn does, or a POST on it fails with 502."""
    template = (ROOT / "nginx" / "gateway.conf.template").read_text(encoding="utf-8")
    nginx_idle = int(re.search(r"upstream gateway \{.*?\bkeepalive_timeout (\d+)s;", template, re.DOTALL).group(1))
    gunicorn_conf = (ROOT / "ml_api" / "gunicorn.conf.py").read_text(encoding="utf-8")
    gunicorn_idle = int(re.search(r"^keepalive = (\d+)", gunicorn_conf, re.MULTILINE).group(1))
    assert nginx_idle < gunicorn_idle


def _bind_mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Container path -> (host path, mode) of every bind mount ("./models:/app/models" and the like)."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        if source.startswith("."):
            mounts[target] = (source, mode[0] if mode else "rw")
    return mounts


def test_the_gateway_reads_the_checkouts_api_env_and_models_where_an_edit_reaches_it(compose) -> None:
    """Edit api.env, `docker compose kill -s HUP api`: new workers read the file the host edited, and the
    models it names. A file mount would keep the old inode after `sed -i`; env_file would win over the file."""
    api = compose["services"]["api"]
    assert "env_file" not in api, "variables Compose sets at creation would win over the edited api.env"
    mounts = _bind_mounts(api)
    settings_file = PurePosixPath(_environment(api)["API_ENV_FILE"])
    assert mounts[str(settings_file.parent)] == (".", "ro"), "the checkout's directory, read-only"
    assert settings_file.name == "api.env"
    assert mounts["/app/models"] == ("./models", "rw"), "MODEL_DIR of api.env, relative to /app"
    assert "MODEL_DIR=models" in (ROOT / "api.env").read_text(encoding="utf-8").splitlines()


def test_gateway_services_read_api_env_and_point_at_services(compose, api_env) -> None:
    services = compose["services"]
    assert services["es-setup"]["env_file"] in ("api.env", ["api.env"])
    for name in ("api", "es-setup"):
        service = services[name]
        environment = _environment(service)
        assert set(environment) <= set(api_env) | {"ELASTICSEARCH_URL", "API_ENV_FILE"}, "an override api.env does not have"
        assert environment["GUNICORN_BIND"].startswith("0.0.0.0:"), "gunicorn must accept nginx's container"
        assert environment["MYSQL_HOST"] in services
        assert environment["LOGSTASH_HOST"] in services
        for url in (environment["REDIS_URL"], environment["ELASTICSEARCH_URL"]):
            assert urlsplit(url).hostname in services, url
    redis_url = urlsplit(_environment(services["api"])["REDIS_URL"])
    assert (redis_url.scheme, redis_url.port) == ("redis", 6379)


def test_other_urls_point_at_services_and_ports(compose, api_env) -> None:
    services = compose["services"]
    kibana = urlsplit(_environment(services["kibana-import"])["KIBANA_URL"])
    assert kibana.hostname in services and kibana.port in _container_ports(services["kibana"])
    logstash_es = urlsplit(_environment(services["logstash"])["ELASTICSEARCH_URL"])
    assert logstash_es.hostname in services and logstash_es.port in _container_ports(services["elasticsearch"])
    command = services["locust"]["command"]
    locust_host = urlsplit(command[command.index("--host") + 1])
    assert locust_host.hostname == "nginx" and locust_host.port == int(api_env["API_PORT"])
    assert "/app/loadtest/locustfile.py" in command


def test_mysql_service_gets_credentials_schema_and_config(compose) -> None:
    mysql = compose["services"]["mysql"]
    assert mysql["env_file"] in ("api.env", ["api.env"])
    volumes = mysql["volumes"]
    assert any(v.startswith("./mysql/schema.sql:/docker-entrypoint-initdb.d/") for v in volumes)
    assert "./mysql/conf.d:/etc/mysql/conf.d:ro" in volumes
    assert list((ROOT / "mysql" / "conf.d").glob("*.cnf"))


def test_elastic_images_share_one_pinned_version(compose) -> None:
    tags = {
        name: service["image"].split(":", 1)[1]
        for name, service in compose["services"].items()
        if service.get("image", "").startswith("docker.elastic.co/")
    }
    assert set(tags) == {"elasticsearch", "logstash", "kibana"}
    assert len(set(tags.values())) == 1, tags
    assert re.fullmatch(r"\$\{ELASTIC_VERSION:-\d+\.\d+\.\d+\}", next(iter(tags.values())))


def test_every_image_is_pinned(compose) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        if "build" in service:
            continue
        repository, _, tag = image.partition(":")
        assert repository and re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_long_running_services_have_health_checks_and_ordered_starts(compose) -> None:
    services = compose["services"]
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shots == {"es-setup", "kibana-import"}
    for name, service in services.items():
        if name not in one_shots:
            assert "healthcheck" in service, f"{name} has no health check"
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency]
            elif condition == "service_completed_successfully":
                assert dependency in one_shots
            else:
                assert condition == "service_started"


def test_state_lives_in_named_volumes(compose) -> None:
    declared = set(compose["volumes"])
    used = {
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if not volume.startswith(".")
    }
    assert used == declared
    assert {"mysql-data", "es-data", "logstash-data", "gateway-var"} <= declared


@pytest.mark.parametrize("name", ["api", "es-setup", "kibana-import"])
def test_gateway_jobs_run_the_project_image(compose, name) -> None:
    service = compose["services"][name]
    assert service["build"] == "." and service["image"] == compose["services"]["api"]["image"]


def test_schema_constants_match_the_gateway(event_schema) -> None:
    from assigner.domain import AssignmentSource
    from ml_api.telemetry import events

    properties = event_schema["properties"]
    assert properties["event"]["properties"]["dataset"]["const"] == events.DATASET
    assert properties["service"]["properties"]["name"]["const"] == events.SERVICE_NAME
    sources = properties["experiment"]["properties"]["assignment_source"]["enum"]
    assert sorted(sources) == sorted(source.value for source in AssignmentSource)


def _heap_mb(java_opts: str) -> int:
    """-Xmx of a JVM option string, in MB."""
    size, unit = re.search(r"-Xmx(\d+)([mg])", java_opts).groups()
    return int(size) * (1024 if unit == "g" else 1)


def test_the_readmes_memory_figure_starts_from_the_configured_heaps(compose) -> None:
    """The README's memory estimate names each JVM heap as docker-compose.yml sets it."""
    memory = re.search(r"\*\*Memory\.\*\*(.*?)\n\n", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL).group(1)
    stated = {name: int(size) * (1024 if unit == "GB" else 1)
              for name, size, unit in re.findall(r"(Elasticsearch|Logstash) (\d+) (GB|MB) heap", memory)}
    services = compose["services"]
    assert stated == {"Elasticsearch": _heap_mb(services["elasticsearch"]["environment"]["ES_JAVA_OPTS"]),
                      "Logstash": _heap_mb(services["logstash"]["environment"]["LS_JAVA_OPTS"])}
    assert re.search(r"needs about \d+ GB", memory)
