"""Named metrics through a real gunicorn: declared over the admin API, fed by /feedback and /covariates, reported
in the results with their intervals and the verdict on the primary metric."""

import random

import numpy as np
import pytest

from tests.conftest import start_gateway
from tests.e2e.test_results_page import NumberCollector, assert_page_shows, chromium, dump_dom  # noqa: F401 (fixture)
from tests.integration.ml_api.results.test_metric_results import DECLARATION  # the four kinds, a covariate
from tests.waiting import wait_until

TOKEN = "e2e-metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Actor": "e2e"}
IRIS = [5.1, 3.5, 1.4, 0.2]
USERS = 160

@pytest.fixture
def gateway(overrides, tmp_path):
    gw = start_gateway({**overrides, "ADMIN_TOKEN": TOKEN}, tmp_path)
    yield gw
    gw.stop()


def test_a_declared_experiment_reports_every_metric_and_decides_on_the_primary(gateway, chromium, tmp_path):
    created = gateway.post("/admin/experiments", {
        "name": "e2e-metrics", "status": "running", "metrics": DECLARATION,
        "variants": [{"name": "control", "weight": 50, "model": "logreg"},
                     {"name": "variation", "weight": 50, "model": "forest"}]}, headers=AUTH)
    assert created.status_code == 201, created.text
    assert created.json()["metrics"]["guardrails"][0]["margin"] == 5
    rng = random.Random(16)
    users = [f"m-{i}" for i in range(USERS)]
    covariates = gateway.post("/covariates", {"experiment": "e2e-metrics", "covariate": "revenue_before",
                                              "values": [{"user_id": u, "value": rng.uniform(0, 80)} for u in users]})
    assert covariates.json() == {"experiment": "e2e-metrics", "covariate": "revenue_before", "accepted": USERS,
                                 "refused_exposed": 0, "late_users": []}

    revenue: dict[str, float] = {}
    for user in users:
        served = gateway.post("/predict", {"user_id": user, "experiment": "e2e-metrics", "features": IRIS})
        assert served.status_code == 200, served.text
        request_id = served.json()["request_id"]
        revenue[user] = rng.expovariate(1 / 40)
        for metric, value in (("click", rng.random() < 0.3), ("revenue", revenue[user]),
                              ("orders", rng.randint(1, 3)), ("latency_ms", rng.gauss(120, 3))):
            answer = gateway.post("/feedback", {"request_id": request_id, "user_id": user, "experiment": "e2e-metrics",
                                                "outcome": value, "metric": metric})  # all three: Redis may lag
            assert answer.status_code == 202, answer.text
            assert answer.json()["metric"] == metric

    late = gateway.post("/covariates", {"experiment": "e2e-metrics", "covariate": "revenue_before",
                                        "values": [{"user_id": users[0], "value": 1.0}]})
    assert late.status_code == 200 and late.json()["refused_exposed"] == 1 and late.json()["late_users"] == [users[0]]
    unknown = gateway.post("/feedback", {"user_id": users[0], "experiment": "e2e-metrics", "outcome": 1,
                                         "metric": "refunds"})
    assert unknown.status_code == 400
    assert unknown.json()["detail"].endswith("it takes outcomes for: click, latency_ms, orders, revenue")

    document = gateway.get("/experiments/e2e-metrics/results").json()
    assert document["primary_metric"] == "clicked"
    metrics = {m["name"]: m for m in document["metrics"]}
    assert list(metrics) == ["clicked", "revenue", "revenue_per_order", "latency_ms"]
    for metric in metrics.values():
        assert sum(v["users"] for v in metric["variants"]) == USERS
        (comparison,) = metric["comparisons"]
        for interval in (comparison, comparison["sequential"]):
            assert interval["ci_low"] is not None, (metric["name"], interval)
            assert interval["ci_low"] < interval["ci_high"], (metric["name"], interval)
    capped = np.quantile(list(revenue.values()), 0.99, method="inverted_cdf")  # every user posted revenue
    assert metrics["revenue"]["cap_applied"] == pytest.approx(capped)
    assert metrics["revenue"]["comparisons"][0]["cuped"]["users_with_covariate"] == {
        v["variant"]: v["users"] for v in metrics["revenue"]["variants"]}
    assert metrics["latency_ms"]["comparisons"][0]["non_inferiority"]["status"] in ("passed", "pending")
    (verdict,) = document["verdicts"]
    assert verdict["variant"] == "variation" and verdict["verdict"] == "keep_running"
    assert verdict["reason"].startswith("undecided: rate")  # the primary is a conversion
    assert document["decision"]["action"] == "keep_running"

    def every_request_counted() -> bool:  # workers add their request statistics every second
        guardrails = gateway.get("/experiments/e2e-metrics/results").json()["guardrails"]["variants"]
        return sum(v["requests"] for v in guardrails) == USERS

    wait_until(every_request_counted, message="the request statistics of every /predict in MySQL")
    page = NumberCollector()
    page.feed(dump_dom(chromium, f"{gateway.url}/experiments/e2e-metrics/results.html", tmp_path / "profile"))
    assert_page_shows(gateway.get("/experiments/e2e-metrics/results").json(), page.numbers)
    shown = {path for path, _, _ in page.numbers}  # the selector starts on the primary metric
    assert {"metrics/0/variants/0/value", "metrics/0/comparisons/0/difference", "metrics/0/comparisons/0/ci_low",
            "metrics/0/comparisons/0/sequential/ci_high"} <= shown
    options = [attrs.get("value") for tag, attrs in page.elements if tag == "option"]
    assert options == ["clicked", "revenue", "revenue_per_order", "latency_ms"]
