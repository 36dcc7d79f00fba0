"""GET /experiments/<name>/results on real MySQL: counts, statistics, guardrails and decisions.

Test data is inserted with multi-row SQL into the private test database; the ground truth
is recomputed here from the raw rows, independently of the summary tables the endpoint reads.
"""

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import pytest
from scipy.stats import chisquare

from experiment_stats import (
    MeanSummary,
    compare_proportions,
    sample_ratio_mismatch,
    welch_t_test,
)
from ml_api.errors import InvalidDefinition
from ml_api.experiments.plans import read_plan
from ml_api.infra.database import Database, apply_schema
from ml_api.telemetry.request_stats import RequestStats

START = datetime(2024, 3, 1)  # naive UTC, like the gateway's writes


def experiment_id(db: Database, name: str) -> int:
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT id FROM experiments WHERE name = %s", (name,))
        return cursor.fetchone()[0]


def execute_many(db: Database, statement: str, rows: Sequence[tuple]) -> None:
    with db.transaction() as conn:
        conn.cursor().executemany(statement, rows)


def seed(db: Database, name: str, users: Mapping[str, int], converted: Mapping[str, int], hours: float = 48.0,
         start: datetime = START) -> int:
    """Exposures spread evenly over ``hours``; the first ``converted[v]`` users of a variant get an outcome
    worth 1..5 ten minutes later, and every tenth of the others an outcome worth 0 (not a conversion)."""
    eid = experiment_id(db, name)
    exposures, outcomes = [], []
    for variant, count in users.items():
        step = hours * 3600 / count
        for i in range(count):
            user, at = f"{variant}-{i}", start + timedelta(seconds=i * step)
            exposures.append((eid, user, variant, at))
            if i < converted.get(variant, 0):
                outcomes.append((uuid.uuid4().hex, eid, user, variant, float(1 + i % 5), at + timedelta(minutes=10)))
            elif i % 10 == 0:
                outcomes.append((uuid.uuid4().hex, eid, user, variant, 0.0, at + timedelta(minutes=5)))
    execute_many(db, "INSERT INTO assignments (experiment_id, user_id, variant, assigned_at) VALUES (%s, %s, %s, %s)",
                 exposures)
    execute_many(db, "INSERT INTO outcomes (feedback_id, experiment_id, user_id, variant, value, recorded_at)"
                     " VALUES (%s, %s, %s, %s, %s, %s)", outcomes)
    return eid


def raw_truth(db: Database, eid: int) -> dict[str, dict[str, float]]:
    """Users, converted users, Σ and Σ² of per-user sums per variant, straight from the raw rows."""
    truth: dict[str, dict[str, float]] = {}
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT variant, COUNT(*) FROM assignments WHERE experiment_id = %s GROUP BY variant", (eid,))
        for variant, users in cursor.fetchall():
            truth[variant] = {"users": users, "conversions": 0, "total": 0.0, "squares": 0.0}
        cursor.execute(
            "SELECT variant, SUM(total > 0), SUM(total), SUM(total * total) FROM"
            " (SELECT variant, user_id, SUM(value) AS total FROM outcomes WHERE experiment_id = %s"
            "  GROUP BY variant, user_id) AS t GROUP BY variant", (eid,))
        for variant, conversions, total, squares in cursor.fetchall():
            truth[variant].update(conversions=int(conversions), total=float(total), squares=float(squares))
    return truth


def record_requests(db: Database, eid: int, variant: str, count: int, latency_ms: float, fallbacks: int = 0,
                    errors: int = 0) -> None:
    stats = RequestStats(db, clock=lambda: START.timestamp())
    for i in range(count):
        stats.record(eid, variant, latency_ms, error=i < errors, fallback=i < fallbacks)
    stats.flush()


def get_results(client, name: str) -> dict:
    response = client.get(f"/experiments/{name}/results")
    assert response.status_code == 200, response.get_data(as_text=True)
    return json.loads(response.get_data(as_text=True), parse_constant=_reject)


def _reject(constant: str):
    raise AssertionError(f"{constant} is not JSON")


def by_variant(rows: list[dict]) -> dict[str, dict]:
    return {row["variant"]: row for row in rows}


def test_counts_rates_and_statistics_match_the_raw_rows(client, db, make_experiment):
    name = make_experiment()
    eid = seed(db, name, {"control": 1200, "variation": 1000}, {"control": 120, "variation": 130})
    body = get_results(client, name)
    truth = raw_truth(db, eid)

    variants = by_variant(body["variants"])
    assert list(variants) == ["control", "variation"] and body["control"] == "control"
    for name_, t in truth.items():
        v = variants[name_]
        assert (v["users"], v["conversions"]) == (t["users"], t["conversions"])
        assert v["conversion_rate"] == pytest.approx(t["conversions"] / t["users"], rel=1e-12)
        assert v["ci_low"] < v["conversion_rate"] < v["ci_high"]
        assert v["outcome_mean"] == pytest.approx(t["total"] / t["users"], rel=1e-12)

    (comparison,) = body["comparisons"]
    c, v = truth["control"], truth["variation"]
    fixed = compare_proportions(c["conversions"], c["users"], v["conversions"], v["users"])
    assert comparison["variant"] == "variation"
    for key in ("difference", "ci_low", "ci_high", "lift", "lift_ci_low", "lift_ci_high", "p_value"):
        assert comparison[key] == pytest.approx(getattr(fixed, key), rel=1e-9), key
    assert comparison["p_value_holm"] == pytest.approx(fixed.p_value, rel=1e-9)  # one variation: no adjustment
    welch = welch_t_test(*(MeanSummary.from_sums(t["users"], t["total"], t["squares"]) for t in (c, v)))
    assert comparison["welch"]["difference"] == pytest.approx(welch.difference, rel=1e-9)
    assert comparison["welch"]["p_value"] == pytest.approx(welch.p_value, rel=1e-6)
    assert 0 < comparison["chance_to_beat_control"] < 1

    srm = sample_ratio_mismatch([1200, 1000], [50, 50])
    assert body["srm"]["observed"] == {"control": 1200, "variation": 1000}
    assert body["srm"]["p_value"] == pytest.approx(srm.p_value, rel=1e-9)
    assert body["srm"]["expected"] == {"control": 1100.0, "variation": 1100.0}


def test_a_user_converts_once_and_only_on_a_positive_outcome(client, db, make_experiment):
    name = make_experiment()
    eid = seed(db, name, {"control": 10, "variation": 10}, {})
    rows = [  # control-1: two positive outcomes, one user; control-2: only zeros; control-3: -1 then +3
        ("control-1", 1.0), ("control-1", 2.0), ("control-2", 0.0), ("control-2", 0.0),
        ("control-3", -1.0), ("control-3", 3.0),
    ]
    execute_many(db, "INSERT INTO outcomes (feedback_id, experiment_id, user_id, variant, value) VALUES"
                     " (%s, %s, %s, 'control', %s)", [(uuid.uuid4().hex, eid, u, value) for u, value in rows])
    control = by_variant(get_results(client, name)["variants"])["control"]
    assert control["conversions"] == 2
    assert control["outcome_mean"] == pytest.approx((3.0 + 0.0 + 2.0) / 10)


def test_a_clear_winner_is_shipped_at_the_first_look_that_shows_it_and_the_verdict_is_recorded(
        client, db, repo, make_experiment):
    """The seed converts each variant's first users, so the difference is clear within the first hours:
    the verdict is the one of that look (its time and numbers), recorded once, in the history too."""
    name = make_experiment()
    seed(db, name, {"control": 2000, "variation": 2000}, {"control": 200, "variation": 400})
    body = get_results(client, name)
    decision = body["decision"]
    assert decision["action"] == "ship_variation" and decision["variant"] == "variation" and decision["final"]
    assert decision["reason"].startswith("ship variation: rate ")
    assert body["timeline"][0]["at"] <= decision["look_at"] < body["timeline"][-1]["at"] <= body["generated_at"]
    (verdict,) = body["verdicts"]
    assert verdict["verdict"] == "ship" and verdict["final"] and verdict["look_at"] == decision["look_at"]
    sequential = body["comparisons"][0]["sequential"]
    assert sequential["p_value"] < 0.05 and sequential["ci_low"] > 0
    assert get_results(client, name)["decision"] == decision
    (recorded,) = [c for c in repo.history(name) if c["action"] == "verdict"]
    assert recorded["actor"] == "verdict"
    assert recorded["after"]["verdicts"] == {"experiment": "ship_variation", "variation": "ship"}


def test_not_enough_data_keeps_running_with_users_and_days_needed(client, db, make_experiment):
    name = make_experiment()
    seed(db, name, {"control": 500, "variation": 500}, {"control": 50, "variation": 52}, hours=24)
    body = get_results(client, name)
    power = body["power"]
    assert body["decision"]["action"] == "keep_running"
    assert power["baseline_rate"] == pytest.approx(0.1)
    assert power["required_users_per_variant"] > 10_000  # 10 % -> 11 % needs about 15,000 per variant
    assert power["users_per_variant"] == 500
    # 500 users per variant arrived within a day (first to last exposure: 23 h 58 min).
    assert power["users_per_day_per_variant"] == pytest.approx(500 * 86400 / (24 * 3600 - 24 * 3600 / 500))
    expected_days = (power["required_users_per_variant"] - 500) / power["users_per_day_per_variant"]
    assert power["days_remaining"] == pytest.approx(expected_days)
    assert "not enough data" in body["decision"]["reason"] and "days at current traffic" in body["decision"]["reason"]


def test_sample_ratio_mismatch_stops_the_experiment(client, db, make_experiment):
    name = make_experiment()
    seed(db, name, {"control": 1000, "variation": 800}, {"control": 100, "variation": 80})
    body = get_results(client, name)
    assert body["srm"]["flagged"] is True and body["srm"]["p_value"] < 0.001
    assert body["decision"]["action"] == "stop"
    assert body["decision"]["reason"].startswith("stop: sample ratio mismatch")


def test_srm_uses_the_configured_weights(client, db, make_experiment):
    name = make_experiment((70, 30))
    seed(db, name, {"control": 700, "variation": 300}, {})
    srm = get_results(client, name)["srm"]
    assert srm["expected"] == {"control": pytest.approx(700), "variation": pytest.approx(300)}
    assert srm["flagged"] is False and srm["p_value"] == pytest.approx(1.0)


def test_a_variations_guardrail_breach_stops_it_and_keeps_the_control(client, db, make_experiment):
    name = make_experiment()
    eid = seed(db, name, {"control": 100, "variation": 100}, {})
    record_requests(db, eid, "control", 300, latency_ms=20)
    record_requests(db, eid, "variation", 300, latency_ms=20, fallbacks=30)
    body = get_results(client, name)
    guardrails = by_variant(body["guardrails"]["variants"])
    assert guardrails["variation"]["fallback_rate"] == pytest.approx(0.1)
    assert guardrails["variation"]["breached"] is True
    assert guardrails["variation"]["breaches"] == ["variation fallback rate 10% > 5%"]
    assert guardrails["control"]["breached"] is False
    assert body["verdicts"][0]["verdict"] == "stop"
    assert body["decision"]["action"] == "keep_control" and body["decision"]["final"]
    assert body["decision"]["reason"] == "keep control: variation: stop (guardrail breached: variation fallback rate 10% > 5%)"


def test_p95_latency_comes_from_the_histogram_and_the_control_does_not_stop_the_test(client, db, make_experiment):
    name = make_experiment()
    eid = seed(db, name, {"control": 100, "variation": 100}, {})
    record_requests(db, eid, "control", 900, latency_ms=100)
    record_requests(db, eid, "control", 100, latency_ms=400)  # 10 % slow: p95 is about 400 ms
    record_requests(db, eid, "variation", 1000, latency_ms=100)
    body = get_results(client, name)
    guardrails = by_variant(body["guardrails"]["variants"])
    assert 400 / 1.2 < guardrails["control"]["p95_latency_ms"] <= 400 * 1.2
    assert 100 / 1.2 < guardrails["variation"]["p95_latency_ms"] <= 100 * 1.2
    assert guardrails["control"]["breached"] is True  # shown ...
    assert body["decision"]["action"] != "stop"  # ... but the status quo does not stop the experiment


def test_guardrails_are_ignored_below_min_requests(client, db, make_experiment):
    name = make_experiment()
    eid = seed(db, name, {"control": 100, "variation": 100}, {})
    record_requests(db, eid, "variation", 50, latency_ms=20, errors=50)
    row = by_variant(get_results(client, name)["guardrails"]["variants"])["variation"]
    assert row["error_rate"] == 1.0 and row["evaluated"] is False and row["breached"] is False


def test_thresholds_come_from_the_experiment_definition(client, db, make_experiment):
    name = make_experiment()
    eid = seed(db, name, {"control": 100, "variation": 100}, {})
    record_requests(db, eid, "variation", 100, latency_ms=20, fallbacks=3)
    with db.connection() as conn:
        conn.cursor().execute("UPDATE experiments SET guardrails = %s WHERE id = %s",
                              (json.dumps({"max_fallback_rate": 0.02, "min_requests": 50, "mde": 0.2}), eid))
    body = get_results(client, name)
    assert body["guardrails"]["thresholds"] == {"max_error_rate": 0.05, "max_fallback_rate": 0.02,
                                                "max_p95_latency_ms": 250.0, "min_requests": 50}
    assert body["power"]["mde_relative"] == 0.1  # the plan was fixed at the start, before "mde" was set
    assert body["decision"]["reason"] == "keep control: variation: stop (guardrail breached: variation fallback rate 3% > 2%)"


@pytest.mark.parametrize("stored,problem", [
    ("{not json", "Expecting property name"),
    ('{"max_error_rate": "high"}', "max_error_rate must be a number between 0 and 1"),
    ('{"colour": 1}', "unknown guardrail"),
])
def test_bad_guardrails_fall_back_to_the_defaults_and_say_why(client, db, make_experiment, stored, problem):
    name = make_experiment()
    with db.connection() as conn:
        conn.cursor().execute("UPDATE experiments SET guardrails = %s WHERE name = %s", (stored, name))
    guardrails = get_results(client, name)["guardrails"]
    assert guardrails["thresholds"]["max_error_rate"] == 0.05
    assert guardrails["config_error"].startswith("stored guardrails ignored, using the defaults")
    assert problem in guardrails["config_error"]


def test_an_experiment_without_data_answers_with_nulls_not_nan(client, make_experiment):
    name = make_experiment((40, 30, 30))
    body = get_results(client, name)  # parse_constant rejects NaN and Infinity
    assert [v["users"] for v in body["variants"]] == [0, 0, 0]
    assert body["variants"][0]["conversion_rate"] is None and body["variants"][0]["ci_low"] is None
    assert [c["variant"] for c in body["comparisons"]] == ["variation", "variation-2"]
    assert body["comparisons"][0]["p_value"] is None
    assert body["srm"]["p_value"] is None and body["srm"]["flagged"] is False
    assert body["timeline"] == [] and body["power"]["days_remaining"] is None
    assert body["decision"]["action"] == "keep_running"


def test_a_b_n_comparisons_are_holm_adjusted(client, db, make_experiment):
    name = make_experiment((34, 33, 33))
    seed(db, name, {"control": 1000, "variation": 1000, "variation-2": 1000},
         {"control": 100, "variation": 125, "variation-2": 140})
    comparisons = by_variant(get_results(client, name)["comparisons"])
    p = {n: c["p_value"] for n, c in comparisons.items()}
    smaller, larger = sorted(p, key=p.get)
    assert comparisons[smaller]["p_value_holm"] == pytest.approx(2 * p[smaller])
    assert comparisons[larger]["p_value_holm"] == pytest.approx(max(p[larger], 2 * p[smaller]))


def test_the_timeline_is_cumulative_and_its_always_valid_p_only_goes_down(client, db, make_experiment):
    name = make_experiment()
    seed(db, name, {"control": 960, "variation": 960}, {"control": 96, "variation": 150}, hours=48)
    body = get_results(client, name)
    timeline = body["timeline"]
    assert body["timeline_bucket_seconds"] == 3600
    assert 48 <= len(timeline) <= 50
    assert timeline[0]["at"] == "2024-03-01T01:00:00.000Z"  # a bucket is reported at its end
    users = [point["users"]["control"] for point in timeline]
    assert users == sorted(users) and users[-1] == 960 and users[0] == 20
    p_values = [point["comparisons"]["variation"]["p_value"] for point in timeline]
    assert all(later <= earlier for earlier, later in zip(p_values, p_values[1:]))
    final = body["comparisons"][0]["sequential"]
    assert final["p_value"] == pytest.approx(p_values[-1])
    last = timeline[-1]["comparisons"]["variation"]
    assert (final["ci_low"], final["ci_high"]) == pytest.approx((last["ci_low"], last["ci_high"]))
    assert timeline[-1]["conversions"] == {"control": 96, "variation": 150}


def test_a_long_experiment_has_a_daily_timeline(client, db, make_experiment):
    name = make_experiment()
    seed(db, name, {"control": 300, "variation": 300}, {}, hours=24 * 30)
    body = get_results(client, name)
    assert body["timeline_bucket_seconds"] == 86400
    assert len(body["timeline"]) == 30


def test_unknown_experiment_is_404(client):
    response = client.get("/experiments/no-such-experiment/results")
    assert response.status_code == 404
    assert response.get_json()["error"] == "unknown_experiment"


def test_the_page_embeds_the_document(client, db, make_experiment):
    name = make_experiment()
    seed(db, name, {"control": 100, "variation": 100}, {"control": 10, "variation": 12})
    response = client.get(f"/experiments/{name}/results.html")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert '<script id="results-data" type="application/json">' in page
    assert "<script src=" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    embedded = page.split('<script id="results-data" type="application/json">')[1].split("</script>")[0]
    document = json.loads(embedded)
    assert document["experiment"] == name and document["variants"][1]["conversions"] == 12
    assert math.isclose(document["variants"][0]["conversion_rate"], 0.1)


def expose(db: Database, eid: int, prefix: str, users: Mapping[str, int], start: datetime, hours: float) -> None:
    """``users[v]`` exposures of variant ``v``, spread evenly over ``hours`` from ``start``."""
    rows = [(eid, f"{prefix}-{variant}-{i}", variant, start + timedelta(seconds=i * hours * 3600 / count))
            for variant, count in users.items() for i in range(count)]
    execute_many(db, "INSERT INTO assignments (experiment_id, user_id, variant, assigned_at) VALUES (%s, %s, %s, %s)",
                 rows)


def change_weights(db: Database, repo, name: str, weights: dict[str, int], at: datetime) -> None:
    repo.set_weights(name, weights, actor="test")
    with db.transaction() as conn:  # as if the change had been made at ``at``
        conn.cursor().execute("UPDATE experiment_changes SET changed_at = %s WHERE id = (SELECT MAX(id) FROM"
                              " experiment_changes WHERE action = 'set_weights')", (at,))


def test_srm_after_a_weight_change_counts_the_users_split_by_the_new_weights(client, db, repo, make_experiment):
    name = make_experiment((50, 50))
    eid = experiment_id(db, name)
    change = START + timedelta(hours=10, minutes=30)  # mid-hour: that hour holds users of both splits
    expose(db, eid, "before", {"control": 500, "variation": 500}, START, 10.5)
    change_weights(db, repo, name, {"control": 90, "variation": 10}, change)
    expose(db, eid, "after", {"control": 900, "variation": 100}, change, 10)

    srm = get_results(client, name)["srm"]
    assert srm["observed"] == {"control": 900, "variation": 100}
    assert srm["expected"] == {"control": pytest.approx(900), "variation": pytest.approx(100)}
    assert srm["since"] == "2024-03-01T10:30:00.000Z"
    assert srm["flagged"] is False and srm["p_value"] == pytest.approx(1.0)
    # All 2,000 users against today's 90/10 (what the check used to do) is a false alarm:
    assert sample_ratio_mismatch([1400, 600], [90, 10]).flagged


def test_srm_after_a_weight_change_still_catches_a_broken_split(client, db, repo, make_experiment):
    name = make_experiment((50, 50))
    eid = experiment_id(db, name)
    expose(db, eid, "before", {"control": 500, "variation": 500}, START, 5)
    change_weights(db, repo, name, {"control": 70, "variation": 30}, START + timedelta(hours=5))
    expose(db, eid, "after", {"control": 800, "variation": 200}, START + timedelta(hours=5), 5)
    srm = get_results(client, name)["srm"]
    reference = chisquare([800, 200], [700, 300])  # scipy, on the users since the change
    assert srm["observed"] == {"control": 800, "variation": 200}
    assert srm["statistic"] == pytest.approx(reference.statistic) and srm["p_value"] == pytest.approx(reference.pvalue)
    assert srm["flagged"] is True


def test_weights_rescaled_to_the_same_split_are_no_change(client, db, repo, make_experiment):
    name = make_experiment((50, 50))
    expose(db, experiment_id(db, name), "u", {"control": 100, "variation": 100}, START, 2)
    change_weights(db, repo, name, {"control": 30, "variation": 30}, START + timedelta(hours=1))
    srm = get_results(client, name)["srm"]
    assert srm["since"] is None and srm["observed"] == {"control": 100, "variation": 100}


def test_a_final_verdict_does_not_flip_when_later_data_points_the_other_way(client, db, make_experiment):
    name = make_experiment()
    seed(db, name, {"control": 1500, "variation": 1500}, {"control": 300, "variation": 150}, hours=3)
    first = get_results(client, name)
    assert first["decision"]["action"] == "keep_control" and first["verdicts"][0]["verdict"] == "stop"
    later = START + timedelta(hours=4)
    with db.transaction() as conn:  # the variation now converts far better than the control
        eid = experiment_id(db, name)
        conn.cursor().executemany(
            "INSERT INTO assignments (experiment_id, user_id, variant, assigned_at) VALUES (%s, %s, %s, %s)",
            [(eid, f"late-{v}-{i}", v, later) for v in ("control", "variation") for i in range(3000)])
        conn.cursor().executemany(
            "INSERT INTO outcomes (feedback_id, experiment_id, user_id, variant, value, recorded_at)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(uuid.uuid4().hex, eid, f"late-variation-{i}", "variation", 1.0, later) for i in range(1500)])
    second = get_results(client, name)
    assert second["decision"] == first["decision"] and second["verdicts"] == first["verdicts"]
    assert second["variants"][1]["users"] == 4500  # later data is shown
    assert len(second["timeline"]) > len(first["timeline"])


def test_one_hour_of_data_is_one_look_whose_time_is_not_in_the_future(client, db, make_experiment):
    """All of it in the current hour: one point, at the page's time rather than at the hour's end."""
    name = make_experiment()
    now = datetime.utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    seed(db, name, {"control": 200, "variation": 200}, {"control": 20, "variation": 25},
         hours=max((now - hour).total_seconds(), 60) / 3600 / 2, start=hour)
    body = get_results(client, name)
    (point,) = body["timeline"]
    assert point["at"] <= body["generated_at"]
    comparison = point["comparisons"]["variation"]
    assert comparison["current_ci_low"] <= comparison["difference"] <= comparison["current_ci_high"]


def test_intervals_wider_than_possible_are_clipped_and_marked(client, db, make_experiment):
    name = make_experiment()
    seed(db, name, {"control": 6, "variation": 6}, {"control": 2, "variation": 3})
    sequential = get_results(client, name)["comparisons"][0]["sequential"]
    assert (sequential["ci_low"], sequential["ci_high"]) == (-1.0, 1.0)
    assert sequential["ci_clipped"] == [True, True] and sequential["current_ci_clipped"] == [True, True]


def test_tau2_comes_from_the_plan_fixed_at_the_start(client, repo, make_experiment):
    name = make_experiment(status="draft")
    repo.set_plan(name, {"baseline_rate": 0.05, "mde": 0.2, "stop_variations": True}, "test")
    assert repo.plan(name).tau2 == pytest.approx(1e-4) and repo.plan(name).fixed_at is None
    repo.set_plan(name, {"baseline_rate": 0.2}, "test")
    repo.set_status(name, "running", "test")
    plan = repo.plan(name)
    assert plan.tau2 == pytest.approx((0.2 * 0.2) ** 2) and plan.fixed_at is not None and plan.stop_variations
    with pytest.raises(InvalidDefinition, match="fixed"):
        repo.set_plan(name, {"mde": 0.05}, "test")
    assert repo.set_plan(name, {"stop_variations": False}, "test") and not repo.plan(name).stop_variations
    assert get_results(client, name)["settings"]["tau2"] == pytest.approx(0.0016)
    assert [c["after"]["plan"]["tau2"] for c in repo.history(name) if c["action"] == "start"] == [pytest.approx(0.0016)]


def test_the_schema_upgrade_gives_started_experiments_the_tau2_they_were_judged_with(db, make_experiment):
    name = make_experiment()
    eid = experiment_id(db, name)
    with db.transaction() as conn:  # as before plans existed
        conn.cursor().execute("DELETE FROM experiment_plans WHERE experiment_id = %s", (eid,))
    with db.connection() as conn:
        apply_schema(conn)
        apply_schema(conn)  # idempotent
        assert read_plan(conn, eid).tau2 == pytest.approx(1e-4)
