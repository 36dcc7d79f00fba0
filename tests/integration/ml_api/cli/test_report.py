"""`python -m ml_api.report NAME` prints the document of the JSON endpoint as tables."""

import json
import os
import subprocess
import sys

from ml_api.cli.report import main, render
from ml_api.config import PROJECT_ROOT
from tests.integration.ml_api.results.test_document import (
    get_results,
    record_requests,
    seed,
)
from tests.integration.ml_api.results.test_metric_results import DECLARATION, insert


def without_clock(document: dict) -> dict:
    return {key: value for key, value in document.items() if key != "generated_at"}


def test_the_report_prints_the_same_numbers_as_the_endpoint(client, db, make_experiment, overrides):
    name = make_experiment()
    eid = seed(db, name, {"control": 1500, "variation": 1500}, {"control": 150, "variation": 210})
    record_requests(db, eid, "variation", 400, latency_ms=30, fallbacks=4)
    body = get_results(client, name)

    env = {**os.environ, **overrides, "PYTHONPATH": str(PROJECT_ROOT)}
    printed = subprocess.run([sys.executable, "-m", "ml_api.report", name], cwd=PROJECT_ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0, printed.stderr
    text = printed.stdout
    assert f"Decision: {body['decision']['action'].upper()} - {body['decision']['reason']}" in text
    first_control_row = next(line for line in text.splitlines() if line.startswith("control"))  # the variants table
    assert first_control_row.split()[1:6] == ["(control)", "50", "1,500", "150", "10.00%"]
    assert f"{body['comparisons'][0]['difference'] * 100:+.2f} pp" in text
    guardrail = next(line for line in text.splitlines() if line.startswith("variation") and "ms" in line)
    assert "400" in guardrail and "1.00%" in guardrail and guardrail.endswith("ok")


def test_json_output_is_the_endpoints_document(client, db, make_experiment, overrides, monkeypatch, capsys):
    for key, value in overrides.items():
        monkeypatch.setenv(key, value)
    name = make_experiment()
    seed(db, name, {"control": 300, "variation": 300}, {"control": 30, "variation": 33})
    assert main([name, "--json"]) == 0
    assert without_clock(json.loads(capsys.readouterr().out)) == without_clock(get_results(client, name))


def test_an_unknown_experiment_is_an_error(overrides, monkeypatch, capsys):
    for key, value in overrides.items():
        monkeypatch.setenv(key, value)
    assert main(["no-such-experiment"]) == 1
    assert "no experiment named 'no-such-experiment'" in capsys.readouterr().err


def test_every_declared_metric_is_printed_with_its_comparison(client, db, repo, make_experiment):
    name = make_experiment(metrics=DECLARATION)
    users = [(f"r{i}", ("control", "variation")[i % 2]) for i in range(400)]
    insert(db, repo.get(name).id, users, [(u, v, metric, 1.0 + i % 7) for i, (u, v) in enumerate(users)
                                          for metric in ("click", "revenue", "orders", "latency_ms")])
    text = render(get_results(client, name))
    for metric in ("clicked (primary, conversion of click", "revenue (secondary, mean of revenue",
                   "revenue_per_order (secondary, ratio of revenue / orders",
                   "latency_ms (guardrail, mean of latency_ms"):
        assert f"Metric {metric}" in text
    assert "capped at" in text and "CUPED on revenue_before" in text
    guardrail = text[text.index("Metric latency_ms"):].splitlines()[4]
    assert guardrail.startswith("variation") and "(margin 5, bound" in guardrail
