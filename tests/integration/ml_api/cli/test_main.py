"""``python -m ml_api.cli``: the command line refuses what the admin API refuses, in the API's words."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema

from ml_api import cli
from ml_api.config import PROJECT_ROOT
from tests.conftest import read_events
from tests.paths import EVENT_SCHEMA


def test_force_takes_user_ids_by_the_api_rules(monkeypatch, overrides, make_experiment, capsys, repo):
    for key, value in overrides.items():
        monkeypatch.setenv(key, value)
    name = make_experiment()
    assert cli.main(["force", name, "qa-1 ", "variation"]) == 1
    assert "user_id must not begin or end with whitespace" in capsys.readouterr().err
    assert cli.main(["force", name, "qa-1", "variation"]) == 0
    assert repo.get(name).overrides == {"qa-1": "variation"}
    assert cli.main(["unforce", name, " qa-1"]) == 1
    assert cli.main(["show", "no-such-experiment"]) == 1
    assert "error: no experiment named 'no-such-experiment'" in capsys.readouterr().err


def test_a_cli_change_is_an_experiment_change_event_in_the_events_file(overrides, make_experiment):
    """Run as an operator runs it: its own process, which delivers its events before it exits."""
    name = make_experiment()
    env = {**os.environ, **overrides, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run([sys.executable, "-m", "ml_api.cli", "--actor", "cli:dana", "set-weights", name,
                           "control=70", "variation=30"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (event,) = [e for e in read_events(Path(overrides["EVENT_FILE"]))
                if e["event"]["action"] == "experiment_change" and e["experiment"]["name"] == name]
    jsonschema.validate(event, json.loads(EVENT_SCHEMA.read_text()))
    change = event["change"]
    assert (change["actor"], change["action"]) == ("cli:dana", "set_weights")
    assert [v["weight"] for v in change["before"]["variants"]] == [50, 50]
    assert [v["weight"] for v in change["after"]["variants"]] == [70, 30]
    assert change["summary"] == "variants.control.weight: 50 → 70; variants.variation.weight: 50 → 30"


def test_every_cli_change_is_reported(monkeypatch, overrides, make_experiment):
    for key, value in overrides.items():
        monkeypatch.setenv(key, value)
    name = make_experiment()
    for argv in (["pause", name], ["set-traffic", name, "0.5"], ["force", name, "qa-9", "control"],
                 ["unforce", name, "qa-9"], ["shadow", name, "forest", "5"], ["guardrails", name, '{"min_requests": 50}']):
        assert cli.main(argv) == 0, argv
    actions = [e["change"]["action"] for e in read_events(Path(overrides["EVENT_FILE"]))
               if e["event"]["action"] == "experiment_change" and e["experiment"]["name"] == name]
    assert sorted(actions) == sorted(["pause", "set_traffic_allocation", "force_variant", "clear_override",
                                      "set_shadow", "set_guardrails"])


def test_metrics_are_declared_shown_kept_in_the_history_and_refused_in_the_api_words(
        monkeypatch, overrides, make_experiment, capsys, repo):
    for key, value in overrides.items():
        monkeypatch.setenv(key, value)
    name = make_experiment(status="draft")
    declaration = {"primary": {"name": "revenue", "type": "mean", "mde": 2},
                   "guardrails": [{"name": "latency_ms", "type": "mean", "direction": "lower", "margin": 20}]}
    assert cli.main(["metrics", name, json.dumps(declaration)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["primary"] == {"name": "revenue", "type": "mean", "direction": "higher", "source": "revenue", "mde": 2}
    assert repo.history(name)[-1]["action"] == "set_metrics"
    assert repo.history(name)[-1]["after"]["metrics"] == shown
    assert cli.main(["metrics", name, '{"primary": {"name": "revenue", "type": "mean"}}']) == 1
    assert "needs mde" in capsys.readouterr().err
    assert cli.main(["start", name]) == 0
    capsys.readouterr()
    assert cli.main(["metrics", name, '{"primary": {"name": "clicked", "type": "conversion"}}']) == 1
    assert "its primary metric is fixed" in capsys.readouterr().err
