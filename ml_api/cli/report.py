"""The results of an experiment as text tables, for a terminal (the same document as the JSON endpoint).

    python -m ml_api.report checkout-model          # tables
    python -m ml_api.report checkout-model --json   # the JSON document of GET /experiments/<name>/results
"""

import argparse
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from ml_api.cli.changes import open_events, repository
from ml_api.cli.failure import report_failure
from ml_api.config import load_config
from ml_api.errors import GatewayError
from ml_api.infra.database import Database
from ml_api.results.document import experiment_results

DASH = "-"


def _signed(scale: float, digits: int, unit: str) -> Callable[[float], str]:
    return lambda v: f"{v * scale:+.{digits}f}{unit}"


# The same formats as the results page.
FORMATS: dict[str, Callable[[float], str]] = {
    "int": lambda v: f"{round(v):,}",
    "pct": lambda v: f"{v * 100:.2f}%",
    "pp": _signed(100, 2, " pp"),
    "lift": _signed(100, 1, "%"),
    "p": lambda v: f"{v:.1e}" if v < 0.0001 else f"{v:.4f}",
    "ms": lambda v: f"{v:.1f} ms",
    "num": lambda v: f"{v:.2f}",
    "snum": lambda v: f"{v:+.4g}",
    "days": lambda v: f"{v:.1f}",
}


def show(value: float | None, fmt: str) -> str:
    return DASH if value is None else FORMATS[fmt](value)


def interval(low: float | None, high: float | None, fmt: str) -> str:
    return f"[{show(low, fmt)}, {show(high, fmt)}]"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def render(doc: dict[str, Any]) -> str:
    """Every section of the results document as text."""
    decision = doc["decision"]
    sections = [
        f"Experiment {doc['experiment']} ({doc['status']}), control {doc['control']}, computed {doc['generated_at']}",
        f"Decision: {decision['action'].upper()} - {decision['reason']}",
        "Variants\n" + table(
            ["variant", "weight", "users", "converted", "rate", "95% CI", "outcome mean"],
            [[v["variant"] + (" (control)" if v["control"] else ""), f"{v['weight']:g}", show(v["users"], "int"),
              show(v["conversions"], "int"), show(v["conversion_rate"], "pct"),
              interval(v["ci_low"], v["ci_high"], "pct"), show(v["outcome_mean"], "num")] for v in doc["variants"]],
        ),
        "Against the control (always-valid = sequential, safe to peek, Holm-adjusted; decisions use it)\n" + table(
            ["variation", "difference", "95% CI", "lift", "p", "p Holm", "always-valid p Holm", "always-valid CI",
             "P(beat control)", "outcome diff", "Welch p"],
            [[c["variant"], show(c["difference"], "pp"), interval(c["ci_low"], c["ci_high"], "pp"),
              show(c["lift"], "lift"), show(c["p_value"], "p"), show(c["p_value_holm"], "p"),
              show(c["sequential"]["p_value_holm"], "p"),
              interval(c["sequential"]["ci_low"], c["sequential"]["ci_high"], "pp"),
              show(c["chance_to_beat_control"], "pct"), show(c["welch"]["difference"], "num"),
              show(c["welch"]["p_value"], "p")] for c in doc["comparisons"]],
        ),
        *(metric_text(m) for m in doc["metrics"]),
        srm_text(doc["srm"]),
        guardrails_text(doc["guardrails"], doc["control"]),
        power_text(doc["power"]),
    ]
    return "\n\n".join(sections) + "\n"


def metric_text(metric: dict[str, Any]) -> str:
    """One declared metric: how it is defined, each variant's value, each variation against the control."""
    fmt, diff = ("pct", "pp") if metric["type"] == "conversion" else ("num", "snum")
    reads = (f"{metric['numerator']} / {metric['denominator']}" if metric["type"] == "ratio" else metric["source"])
    cap = f", capped at {show(metric['cap_applied'], 'num')}" if metric.get("cap") else ""
    covariate = f", CUPED on {metric['covariate']}" if metric.get("covariate") else ""
    head = (f"Metric {metric['name']} ({metric['role']}, {metric['type']} of {reads}, {metric['direction']} is better"
            f"{cap}{covariate})")
    values = "  ".join(f"{v['variant']}: {show(v['value'], fmt)}" for v in metric["variants"])
    rows = []
    for c in metric["comparisons"]:
        seq, cuped, guard = c["sequential"] or {}, c.get("cuped"), c.get("non_inferiority")
        rows.append([c["variant"], show(c["difference"], diff), interval(c["ci_low"], c["ci_high"], diff),
                     show(c["p_value"], "p"), interval(seq.get("ci_low"), seq.get("ci_high"), diff),
                     f"{show(cuped['difference'], diff)} {interval(cuped['ci_low'], cuped['ci_high'], diff)}, "
                     f"variance removed {show(cuped['variance_reduction'], 'pct')}" if cuped else DASH,
                     f"{guard['status']} (margin {guard['margin']:g}, bound {show(guard['bound'], 'snum')})"
                     if guard else DASH])
    return f"{head}\n{values}\n" + table(
        ["variation", "difference", "95% CI", "p", "always-valid CI", "CUPED", "non-inferiority"], rows)


def srm_text(srm: dict[str, Any]) -> str:
    status = "MISMATCH" if srm["flagged"] else "ok"
    return f"Sample ratio: {status} (p = {show(srm['p_value'], 'p')}, flagged below {srm['threshold']:g})\n" + table(
        ["variant", "observed", "expected"],
        [[name, show(observed, "int"), show(srm["expected"][name], "int")]
         for name, observed in srm["observed"].items()],
    )


def guardrails_text(guardrails: dict[str, Any], control: str) -> str:
    t = guardrails["thresholds"]
    limits = (f"limits: error rate {show(t['max_error_rate'], 'pct')}, fallback rate "
              f"{show(t['max_fallback_rate'], 'pct')}, p95 {show(t['max_p95_latency_ms'], 'ms')}, "
              f"judged from {t['min_requests']:g} requests")
    rows = []
    for g in guardrails["variants"]:
        status = "; ".join(g["breaches"]) if g["breached"] else ("ok" if g["evaluated"] else "too few requests")
        rows.append([g["variant"] + (" (control)" if g["variant"] == control else ""), show(g["requests"], "int"),
                     show(g["error_rate"], "pct"), show(g["fallback_rate"], "pct"), show(g["p95_latency_ms"], "ms"),
                     status])
    note = f"\nconfiguration problem: {guardrails['config_error']}" if guardrails["config_error"] else ""
    return (f"Guardrails ({limits})\n"
            + table(["variant", "requests", "error rate", "fallback rate", "p95 latency", "status"], rows) + note)


def power_text(power: dict[str, Any]) -> str:
    return (f"Power: {show(power['required_users_per_variant'], 'int')} users per variant to detect a "
            f"{show(power['mde_relative'], 'lift')} lift on {show(power['baseline_rate'], 'pct')}; "
            f"{show(power['users_per_variant'], 'int')} so far (smallest variant), "
            f"{show(power['users_per_day_per_variant'], 'int')} a day, "
            f"{show(power['days_remaining'], 'days')} days remaining")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_api.report", description="Print an experiment's results.")
    parser.add_argument("name", help="experiment name")
    parser.add_argument("--json", action="store_true", help="print the JSON document instead of tables")
    args = parser.parse_args(argv)
    config = load_config(os.environ)
    events = open_events(config)  # a verdict given for the first time is a change, reported as such
    try:
        db = Database(config.mysql)
        doc = experiment_results(db, args.name, repository(config, events, db))
    except GatewayError as exc:  # unknown experiment, MySQL away
        return report_failure(exc)
    finally:
        events.close()
    print(json.dumps(doc, indent=2) if args.json else render(doc).rstrip("\n"))
    return 0

