"""The results page through a real gunicorn, rendered by headless Chromium, shows the JSON's numbers.

Chromium is Debian's ``chromium`` package; scripts/ensure_test_tools.sh installs it, and
these tests try that script once before skipping (only when it cannot be installed).
"""

import json
import math
import re
import shutil
import subprocess
from collections import Counter
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from ml_api.config import PROJECT_ROOT
from tests.integration.ml_api.results.test_document import record_requests, seed
from tests.png import read_png
from tests.waiting import wait_until

IRIS = [5.1, 3.5, 1.4, 0.2]
SCALE = {"pct": 100, "pp": 100, "lift": 100}
DASH = "\u2014"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium binary, installed by scripts/ensure_test_tools.sh when missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    attempt = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "ensure_test_tools.sh")],
                             capture_output=True, text=True, timeout=900)
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip(f"chromium is not installed and could not be installed: {attempt.stderr.strip()[-500:]}")
    return found


def dump_dom(chromium: str, url: str, profile: Path) -> str:
    """The DOM after the page's scripts ran (Chromium's --dump-dom)."""
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "</html>" in done.stdout, done.stderr[-2000:]
    return done.stdout


class NumberCollector(HTMLParser):
    """Every element carrying ``data-path`` (the JSON pointer of the number it shows), with its text."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers: list[tuple[str, str, str]] = []  # (path, format, text)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self._open: tuple[str, str, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        self.elements.append((tag, attributes))
        if "data-path" in attributes:
            self._open = (attributes["data-path"], attributes["data-format"], [])

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[2].append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            path, fmt, text = self._open
            self.numbers.append((path, fmt, "".join(text)))
            self._open = None


def lookup(document: dict, path: str):
    value = document
    for key in path.split("/"):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def shown_value(text: str) -> tuple[float, float]:
    """The number a formatted text shows and half a unit of its last digit (the rounding allowed)."""
    match = re.fullmatch(r"([+-]?[\d,]*\.?\d*)(?:e([+-]?\d+))?(?:%| pp| ms)?", text.strip())
    assert match, f"not a number: {text!r}"
    mantissa, exponent = match.group(1).replace(",", ""), int(match.group(2) or 0)
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return float(mantissa) * 10**exponent, 0.5 * 10 ** (exponent - decimals)


def assert_page_shows(document: dict, numbers: list[tuple[str, str, str]]) -> None:
    for path, fmt, text in numbers:
        expected = lookup(document, path)
        if expected is None:
            assert text == DASH, (path, text)
            continue
        value, half_unit = shown_value(text)
        assert math.isclose(value, expected * SCALE.get(fmt, 1), abs_tol=half_unit * 1.0001 + 1e-12), \
            (path, fmt, text, expected)


def test_the_page_draws_the_numbers_of_the_json_endpoint(chromium, gateway, db, make_experiment, tmp_path):
    name = make_experiment((34, 33, 33))
    eid = seed(db, name, {"control": 1200, "variation": 1150, "variation-2": 1180},
               {"control": 120, "variation": 150, "variation-2": 118}, hours=60)
    record_requests(db, eid, "control", 500, latency_ms=40)
    record_requests(db, eid, "variation", 500, latency_ms=90, fallbacks=40)
    document = gateway.get(f"/experiments/{name}/results").json()

    page = NumberCollector()
    page.feed(dump_dom(chromium, f"{gateway.url}/experiments/{name}/results.html", tmp_path / "profile"))
    assert_page_shows(document, page.numbers)

    shown = {path for path, _, _ in page.numbers}
    last = len(document["timeline"]) - 1
    for i, variant in enumerate(document["variants"]):
        assert {f"variants/{i}/conversion_rate", f"variants/{i}/ci_low", f"variants/{i}/ci_high",
                f"guardrails/variants/{i}/p95_latency_ms", f"srm/expected/{variant['variant']}"} <= shown
    for i, comparison in enumerate(document["comparisons"]):
        assert {f"comparisons/{i}/difference", f"comparisons/{i}/sequential/p_value_holm",
                f"comparisons/{i}/sequential/ci_low", f"comparisons/{i}/chance_to_beat_control",
                f"timeline/{last}/comparisons/{comparison['variant']}/difference"} <= shown
    assert {"srm/p_value", "power/required_users_per_variant", "power/days_remaining"} <= shown

    circles = [attrs for tag, attrs in page.elements if tag == "circle" and attrs.get("class") != "look"]
    lines = {attrs["data-variant"]: int(attrs["data-points"]) for tag, attrs in page.elements
             if tag == "polyline" and "difference" in attrs.get("class", "")}
    assert len(circles) == 3
    assert lines == {"variation": len(document["timeline"]), "variation-2": len(document["timeline"])}
    assert document["verdicts"][0]["verdict"] == "stop"  # variation's fallback rate 8 % > 5 %
    decision = next(attrs for tag, attrs in page.elements if attrs.get("id") == "decision")
    assert decision["class"] == "decision " + document["decision"]["action"]


def test_predictions_and_feedback_through_the_gateway_reach_the_results(gateway, make_experiment):
    name = make_experiment()
    variants = {}
    for i in range(30):
        answer = gateway.post("/predict", {"user_id": f"e2e-{i}", "experiment": name, "features": IRIS})
        assert answer.status_code == 200, answer.text
        variants[f"e2e-{i}"] = answer.json()["variant"]
    for i in range(10):
        assert gateway.post("/feedback", {"user_id": f"e2e-{i}", "experiment": name, "outcome": 1}).status_code == 202

    def results_with_every_request() -> dict | None:  # each worker flushes its request counts every second
        body = gateway.get(f"/experiments/{name}/results").json()
        return body if sum(g["requests"] for g in body["guardrails"]["variants"]) == 30 else None

    body = wait_until(results_with_every_request, interval=0.2, message="the results count all 30 requests")
    rows = {v["variant"]: v for v in body["variants"]}
    for variant in ("control", "variation"):
        assert rows[variant]["users"] == sum(v == variant for v in variants.values())
        assert rows[variant]["conversions"] == sum(variants[f"e2e-{i}"] == variant for i in range(10))
    guardrails = {g["variant"]: g for g in body["guardrails"]["variants"]}
    assert sum(g["requests"] for g in guardrails.values()) == 30
    assert all(g["p95_latency_ms"] > 0 for g in guardrails.values() if g["requests"])
    assert body["decision"]["action"] == "keep_running"


def screenshot(chromium: str, url: str, profile: Path, path: Path) -> np.ndarray:
    """What Chromium draws of the page (its --screenshot), as RGB pixels."""
    done = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1000,2600",
                           "--hide-scrollbars", f"--screenshot={path}", url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and path.exists(), done.stderr[-2000:]
    return read_png(path)


def chart_regions(pixels: np.ndarray) -> list[tuple[int, int]]:
    """Row ranges of the charts: their background (#fcfcfc) fills most of a row."""
    rows = (np.abs(pixels.astype(int) - 252).sum(axis=2) == 0).mean(axis=1) > 0.3
    edges = np.flatnonzero(np.diff(np.concatenate([[0], rows.astype(int), [0]])))
    runs: list[list[int]] = []
    for a, b in zip(edges[::2], edges[1::2]):
        if runs and a - runs[-1][1] <= 8:  # a grid line or a bar crossing the chart
            runs[-1][1] = int(b)
        else:
            runs.append([int(a), int(b)])
    return [(a, b) for a, b in runs if b - a > 40]


def color_pixels(region: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int((np.abs(region.astype(int) - rgb).sum(axis=2) < 30).sum())


@pytest.mark.parametrize("hours", [1, 30])
def test_the_page_draws_points_labels_and_verdicts(chromium, gateway, db, make_experiment, tmp_path, hours):
    """Seen in a browser: every look is a point (a single hour too), time labels are not later than the
    page's time, axis ticks are round, each variation has its verdict badge, the header names the control
    once. The screenshot shows the points and the labels in the cumulative-difference chart."""
    name = make_experiment((34, 33, 33))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    seed(db, name, {"control": 1500, "variation": 1500, "variation-2": 1500},
         {"control": 300, "variation": 120, "variation-2": 310}, hours=max((now - start).total_seconds(), 120) / 3600 / 2,
         start=start)
    url = f"{gateway.url}/experiments/{name}/results.html"
    html = dump_dom(chromium, url, tmp_path / "profile")
    page = NumberCollector()
    page.feed(html)
    document = json.loads(re.search(r'<script id="results-data" type="application/json">(.*?)</script>', html,
                                    re.S).group(1))  # the page's own document: its time, its numbers
    assert_page_shows(document, page.numbers)

    looks = Counter(attrs["data-variant"] for tag, attrs in page.elements if attrs.get("class") == "look")
    assert looks == {"variation": len(document["timeline"]), "variation-2": len(document["timeline"])}
    assert (hours == 1) == (len(document["timeline"]) == 1)
    times = [attrs["data-at"] for tag, attrs in page.elements if attrs.get("class") == "time"]
    assert times and all(at <= document["generated_at"] for at in times)
    badges = {attrs["data-variant"]: attrs["data-verdict"] for tag, attrs in page.elements
              if "badge" in attrs.get("class", "") and "data-verdict" in attrs}
    assert badges == {v["variant"]: v["verdict"] for v in document["verdicts"]}
    assert badges["variation"] == "stop"
    assert "control control" not in html
    ticks = re.findall(r'class="tick"[^>]*>([+-]?[\d.]+) ?(?:pp|%)<', html)
    assert len(ticks) >= 4
    for tick in map(float, ticks):  # 1, 2 or 5 times a power of ten, times an integer
        assert any(math.isclose(tick / step, round(tick / step), abs_tol=1e-6)
                   for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50)), ticks

    pixels = screenshot(chromium, url, tmp_path / "shot-profile", tmp_path / "page.png")
    regions = chart_regions(pixels)
    assert len(regions) >= 2, regions
    top, bottom = regions[1]  # the rate chart, then the cumulative difference over time
    chart = pixels[top:bottom]
    assert color_pixels(chart, (31, 119, 180)) > 40 and color_pixels(chart, (214, 39, 40)) > 40  # the points
    ink = np.abs(chart.astype(int)).sum(axis=2) < 250
    width = chart.shape[1]
    assert ink[:, : width // 12].sum() > 50  # the value labels left of the plot
    assert ink[-(bottom - top) // 10:, : width // 2].sum() > 20  # the time label under it
