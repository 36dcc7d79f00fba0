"""The Logstash pipelines and settings, read by a real implementation of Logstash's grammar, without a Logstash."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest
import yaml

from logstash_pipeline_parser.tree import ParseError

from . import logstash_config
from .project import ROOT

LOGSTASH = ROOT / "logstash"


@pytest.fixture(scope="module")
def pipeline() -> dict[str, list[logstash_config.Plugin]]:
    """The parsed abtest pipeline."""
    return logstash_config.parse((LOGSTASH / "pipeline" / "abtest.conf").read_text(encoding="utf-8"))


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


def test_health_check_asks_for_the_pipeline_by_id(compose) -> None:
    pipelines = yaml.safe_load((LOGSTASH / "config" / "pipelines.yml").read_text(encoding="utf-8"))
    (pipeline,) = pipelines
    health = " ".join(compose["services"]["logstash"]["healthcheck"]["test"])
    assert f"/_node/pipelines/{pipeline['pipeline.id']}" in health


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
