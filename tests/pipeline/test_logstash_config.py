"""The Logstash pipelines and settings, read by a real implementation of Logstash's grammar, without a Logstash."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

import pytest
import yaml

from logstash_pipeline_parser.tree import ParseError

from . import logstash_config
from .project import ROOT, leaf_fields

LOGSTASH = ROOT / "logstash"


@pytest.fixture(scope="module")
def pipeline() -> dict[str, list[logstash_config.Plugin]]:
    """The parsed abtest pipeline."""
    return logstash_config.parse((LOGSTASH / "pipeline" / "abtest.conf").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dlq_pipeline() -> dict[str, list[logstash_config.Plugin]]:
    """The parsed abtest-dlq pipeline, which reads abtest's dead letter queue."""
    return logstash_config.parse((LOGSTASH / "pipeline" / "abtest-dlq.conf").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pipelines_yml() -> dict[str, dict]:
    """pipelines.yml by pipeline id."""
    pipelines = yaml.safe_load((LOGSTASH / "config" / "pipelines.yml").read_text(encoding="utf-8"))
    return {pipeline["pipeline.id"]: pipeline for pipeline in pipelines}


@pytest.fixture(scope="module")
def settings() -> dict:
    """logstash.yml."""
    return yaml.safe_load((LOGSTASH / "config" / "logstash.yml").read_text(encoding="utf-8"))


def test_http_input_listens_on_logstash_port_and_reads_json_lines(pipeline, api_env) -> None:
    (http,) = pipeline["input"]
    assert http.name == "http", "an input that acknowledges what it stored (the gateway waits for its 200)"
    assert http.settings["port"] == int(api_env["LOGSTASH_PORT"])
    assert http.settings["codec"] == "json_lines"
    # The parser's tree does not tell an empty hash from an empty array: either means none.
    assert http.settings["additional_codecs"] in ({}, []), "no other codec picked by Content-Type"


def test_http_input_adds_nothing_to_the_event(pipeline) -> None:
    """The event's own http.*, url.* and host.* describe the request the gateway served;
    the input's ECS enrichment (http.method, url.path, host.ip of the POST) would overwrite them."""
    (http,) = pipeline["input"]
    assert http.settings["ecs_compatibility"] == "disabled"
    assert http.settings["remote_host_target_field"].startswith("[@metadata]")
    assert http.settings["request_headers_target_field"].startswith("[@metadata]")


def test_filters_drop_fields_that_are_not_in_the_event(pipeline) -> None:
    first = pipeline["filter"][0]
    assert first.name == "mutate", "before the document id is computed from the content"
    assert {"[event][original]", "@version"} <= set(first.settings["remove_field"])


def test_document_id_is_the_event_id_or_else_a_content_hash(pipeline) -> None:
    (conditional,) = [item for item in pipeline["filter"] if isinstance(item, logstash_config.Conditional)]
    (condition, with_id), (otherwise, without_id) = conditional.branches
    assert condition == ["[event][id]"] and otherwise is None
    (copy,) = with_id
    (fingerprint,) = without_id
    assert copy.name == "mutate" and fingerprint.name == "fingerprint"
    target = fingerprint.settings["target"]
    assert copy.settings["copy"] == {"[event][id]": target}
    assert fingerprint.settings["concatenate_all_fields"] is True
    assert target.startswith("[@metadata]"), "the id must not be indexed as a field"
    (output,) = pipeline["output"]
    assert output.settings["document_id"] == "%{" + target + "}"


def test_output_writes_daily_indices_without_managing_templates(pipeline, compose) -> None:
    (output,) = pipeline["output"]
    assert output.name == "elasticsearch"
    settings = output.settings
    assert settings["manage_template"] is False
    assert settings["ilm_enabled"] == "false"
    assert settings["data_stream"] == "false"
    assert re.fullmatch(r"abtest-events-%\{\+YYYY\.MM\.dd\}", settings["index"])
    (hosts,) = settings["hosts"]
    match = re.fullmatch(r"\$\{ELASTICSEARCH_URL:(http://([\w-]+):9200)\}", hosts)
    assert match, hosts
    assert match.group(2) in compose["services"]
    assert compose["services"]["logstash"]["environment"]["ELASTICSEARCH_URL"] == match.group(1)


def test_persistent_queue_is_on_with_a_size_limit(settings) -> None:
    assert settings["queue.type"] == "persisted"
    assert re.fullmatch(r"\d+(b|kb|mb|gb|tb|pb)", str(settings["queue.max_bytes"]))
    assert settings["dead_letter_queue.enable"] is True


def test_compose_mounts_the_config_where_pipelines_yml_looks(compose) -> None:
    logstash = compose["services"]["logstash"]
    mounts = {}
    for volume in logstash["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    assert mounts["/usr/share/logstash/config/logstash.yml"] == "./logstash/config/logstash.yml"
    assert mounts["/usr/share/logstash/config/pipelines.yml"] == "./logstash/config/pipelines.yml"
    assert mounts["/usr/share/logstash/data"] == "logstash-data", "the persistent queue must outlive the container"
    pipelines = yaml.safe_load((LOGSTASH / "config" / "pipelines.yml").read_text(encoding="utf-8"))
    for pipeline in pipelines:
        config = PurePosixPath(pipeline["path.config"])
        source = mounts[str(config.parent)]
        assert (ROOT / source / config.name).is_file(), f"{config} is not in {source}"


def test_health_check_asks_for_every_pipeline_by_id(compose, pipelines_yml) -> None:
    assert set(pipelines_yml) == {"abtest", "abtest-dlq"}
    health = " ".join(compose["services"]["logstash"]["healthcheck"]["test"])
    for pipeline_id in pipelines_yml:
        assert re.search(rf"/_node/pipelines/{re.escape(pipeline_id)}\b(?!-)", health), pipeline_id


# --- the dead letter queue, watched -------------------------------------------------

def test_dlq_pipeline_reads_the_abtest_pipelines_queue_where_logstash_writes_it(dlq_pipeline, pipelines_yml,
                                                                              settings, compose) -> None:
    (reader,) = dlq_pipeline["input"]
    assert reader.name == "dead_letter_queue"
    assert reader.settings["pipeline_id"] in pipelines_yml and reader.settings["pipeline_id"] != "abtest-dlq"
    assert settings["dead_letter_queue.enable"] is True, "the abtest pipeline writes its queue"
    assert "path.dead_letter_queue" not in settings, "so the queue is under path.data"
    data = next(v.split(":")[1] for v in compose["services"]["logstash"]["volumes"] if v.startswith("logstash-data:"))
    assert str(reader.settings["path"]) == f"{data}/dead_letter_queue"
    assert reader.settings["commit_offsets"] is True, "a restart does not index every dead letter again"
    assert reader.settings["clean_consumed"] is True, "read segments are deleted before max_bytes drops events"


def test_dlq_pipeline_sends_nothing_to_a_dead_letter_queue_of_its_own(pipelines_yml) -> None:
    assert pipelines_yml["abtest-dlq"]["dead_letter_queue.enable"] is False
    assert "dead_letter_queue.enable" not in pipelines_yml["abtest"], "abtest keeps logstash.yml's: on"


def test_dlq_documents_go_to_daily_dlq_indices_with_a_stable_id(dlq_pipeline, pipeline) -> None:
    first = dlq_pipeline["filter"][0]
    assert first.name == "fingerprint", "the id is the refused event's, before the dlq fields are added"
    assert first.settings["concatenate_all_fields"] is True
    (output,) = dlq_pipeline["output"]
    assert output.name == "elasticsearch"
    assert re.fullmatch(r"abtest-dlq-%\{\+YYYY\.MM\.dd\}", output.settings["index"])
    assert output.settings["document_id"] == "%{" + first.settings["target"] + "}"
    (events_output,) = pipeline["output"]
    for name in ("hosts", "manage_template", "ilm_enabled", "data_stream"):
        assert output.settings[name] == events_output.settings[name], name


def test_dlq_pipeline_keeps_the_reason_elasticsearch_gave(dlq_pipeline) -> None:
    copies = {}
    for plugin in logstash_config.walk(dlq_pipeline["filter"]):
        copies.update(plugin.settings.get("copy", {}))
    assert copies["[@metadata][dead_letter_queue][reason]"] == "[dlq][reason]"
    assert copies["[@metadata][dead_letter_queue][entry_time]"] == "[dlq][entry_time]"


DLQ_REASONS = {  # the elasticsearch output's message, as Logstash 8 (Ruby 3.1) and 9 (Ruby 3.4) write it
    "mapper_parsing_exception": (
        'Could not index event to Elasticsearch. status: 400, action: ["index", {:_id=>"e1", :_index=>'
        '"abtest-events-2026.12.02", :routing=>nil}, {"error"=>{"type"=>"model_error", "message"=>"boom"}}], '
        'response: {"index"=>{"_index"=>"abtest-events-2026.12.02", "_id"=>"e1", "status"=>400, "error"=>'
        '{"type"=>"mapper_parsing_exception", "reason"=>"failed to parse", "caused_by"=>{"type"=>'
        '"illegal_argument_exception", "reason"=>"x"}}}}'),
    "document_parsing_exception": (
        'Could not index event to Elasticsearch. status: 400, action: ["index", {_id: "e2", _index: '
        '"abtest-events-2026.12.02"}, {...}], response: {"index" => {"status" => 400, "error" => {"type" => '
        '"document_parsing_exception", "reason" => "[1:120] failed to parse field [latency.total_ms] of type '
        '[float] in document with id \'e2\'. Preview of field\'s value: \'slow\'"}}}'),
}


def _grok_regex(pattern: str) -> tuple[re.Pattern[str], list[str]]:
    """A grok pattern that uses only %{DATA:[a][b]} as a Python regex (DATA is grok's .*?), and its field names."""
    names: list[str] = []

    def group(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return "(.*?)"

    return re.compile(re.sub(r"%\{DATA:([^}]+)\}", group, pattern)), names


@pytest.mark.parametrize("error_type", DLQ_REASONS)
def test_dlq_pipeline_finds_elasticsearchs_error_type_in_the_reason(error_type) -> None:
    """Read from the file itself: the parser drops backslashes, so the pattern has none to lose."""
    text = (LOGSTASH / "pipeline" / "abtest-dlq.conf").read_text(encoding="utf-8")
    (pattern,) = re.findall(r'"\[dlq\]\[reason\]" => \'([^\']*)\'', text)
    assert "\\" not in pattern
    regex, names = _grok_regex(pattern)
    fields = dict(zip(names, regex.search(DLQ_REASONS[error_type]).groups()))
    assert fields["[dlq][error][type]"] == error_type, "the response's error, not the event's own error field"
    assert fields["[dlq][error][reason]"].startswith(("failed to parse", "[1:120] failed to parse"))


def test_every_field_the_dlq_pipeline_writes_is_mapped_in_its_template(dlq_pipeline) -> None:
    template = json.loads((LOGSTASH / "dlq-index-template.json").read_text(encoding="utf-8"))
    mappings = template["template"]["mappings"]
    assert mappings["dynamic"] is False, "the refused event's own fields must not be indexed again"
    mapped = leaf_fields(mappings["properties"])
    written = set()
    for plugin in logstash_config.walk(dlq_pipeline["filter"]):
        written |= set(plugin.settings.get("copy", {}).values()) | set(plugin.settings.get("add_field", {}))
        for pattern in plugin.settings.get("match", {}).values():
            written |= set(re.findall(r"%\{\w+:([^}]+)\}", pattern))
    fields = {".".join(re.findall(r"\[([^\]]+)\]", reference)) for reference in written}
    assert fields and fields <= set(mapped), fields - set(mapped)
    assert set(mapped) - fields == {"@timestamp"}, "nothing of the refused event is mapped but its time"
    assert {f for f in fields if not f.startswith("dlq.")} == set()


def test_reader_keeps_conditional_branches() -> None:
    (conditional,) = logstash_config.parse(
        'filter { if [a] == "x" { drop { } } else if [b] { mutate { } } else { } }'
    )["filter"]
    assert [(c, [p.name for p in ps]) for c, ps in conditional.branches] == [
        (["[a]", "==", "x"], ["drop"]), (["[b]"], ["mutate"]), (None, [])]


PIPELINES = sorted((LOGSTASH / "pipeline").glob("*.conf"))


@pytest.mark.parametrize("path", PIPELINES, ids=[p.name for p in PIPELINES])
def test_every_plugin_and_option_is_one_the_plugins_document(path) -> None:
    assert logstash_config.unknown_options(logstash_config.parse(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("broken", [
    "input { http { port => 5000 }",                      # an unclosed block
    "input { http { port => } }",                         # a setting without a value
    "input { http { port = 5000 } }",                     # = for =>
    'filter { if [a] == { drop { } } }',                  # a comparison without its right side
])
def test_a_syntax_error_fails(broken: str) -> None:
    with pytest.raises(ParseError):
        logstash_config.parse(broken)


def test_a_misspelt_option_or_an_unknown_plugin_is_found() -> None:
    text = (LOGSTASH / "pipeline" / "abtest.conf").read_text(encoding="utf-8")
    assert logstash_config.unknown_options(logstash_config.parse(text.replace("document_id =>", "documentid =>"))) == [
        "output elasticsearch: unknown option 'documentid'"]
    assert logstash_config.unknown_options(logstash_config.parse("filter { mutatee { } }")) == [
        "filter plugin 'mutatee': not in data/logstash-plugin-options.json"]
