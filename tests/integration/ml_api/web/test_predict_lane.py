"""POST /predict through the lane ahead of Flask answers exactly as the Flask view does.

The app's test client goes through the lane (it wraps ``app.wsgi_app``); a client on the
lane's inner ``app`` reaches the Flask view alone. Real Redis and MySQL behind both.
"""

import json
from pathlib import Path

import pytest
from flask import request
from werkzeug.test import Client

IRIS = [5.1, 3.5, 1.4, 0.2]
VOLATILE = {"request_id", "latency_ms"}  # differ between any two requests


@pytest.fixture
def experiment(make_experiment):
    return make_experiment()


@pytest.fixture
def flask_calls(app) -> list[str]:
    """Paths of the requests Flask itself dispatched (the lane's never reach this hook)."""
    calls: list[str] = []

    def note() -> None:
        calls.append(request.path)

    app.before_request(note)
    return calls


def flask_only(app) -> Client:
    return Client(app.wsgi_app.app)


def bodies(experiment: str) -> list[tuple[str, bytes]]:
    """(case, raw body): one that succeeds, then each way a body can be refused."""
    good = {"user_id": "lane-user", "experiment": experiment, "features": IRIS}
    return [
        ("served", json.dumps(good).encode()),
        ("not JSON", b"{user_id: 1"),
        ("not an object", b"[1, 2]"),
        ("no user id", json.dumps({"experiment": experiment, "features": IRIS}).encode()),
        ("lone surrogate", b'{"user_id": "\\ud800", "features": [1, 2, 3, 4]}'),
        ("NaN feature", b'{"user_id": "u", "features": [NaN, 1, 2, 3]}'),
        ("wrong feature count", json.dumps({**good, "features": [1, 2]}).encode()),
        ("unknown experiment", json.dumps({**good, "experiment": "no-such-experiment"}).encode()),
    ]


@pytest.mark.parametrize("case", [case for case, _ in bodies("x")])
def test_lane_and_flask_view_answer_alike(app, client, experiment, flask_calls, case):
    raw = dict(bodies(experiment))[case]
    through_lane = client.post("/predict", data=raw, content_type="application/json")
    through_flask = flask_only(app).post("/predict", data=raw, content_type="application/json")
    assert flask_calls == ["/predict"]  # the second one only: the lane answered the first

    assert through_lane.status_code == through_flask.status_code
    assert through_lane.headers["Content-Type"] == through_flask.headers["Content-Type"] == "application/json"
    lane_body, flask_body = through_lane.get_json(), through_flask.get_json()
    if through_lane.status_code == 200:
        assert {k: v for k, v in lane_body.items() if k not in VOLATILE} == \
               {k: v for k, v in flask_body.items() if k not in VOLATILE}
        assert lane_body["request_id"] != flask_body["request_id"]
    else:
        assert through_lane.status_code in (400, 404)
        assert lane_body == flask_body
        assert set(lane_body) == {"error", "detail"}
    assert through_lane.data.endswith(b"\n") and through_flask.data.endswith(b"\n")


@pytest.mark.parametrize("method,path,content_type,data,environ", [
    ("GET", "/predict", None, None, {}),  # 405 from Flask's routing
    ("POST", "/predict/", "application/json", b"{}", {}),
    ("POST", "/predict", "text/plain", b"{}", {}),  # 415
    ("POST", "/predict", "application/json", b"x" * 20_000, {}),  # 413 (MAX_BODY_BYTES 16384)
    # chunked, as gunicorn passes it on: no declared length, the stream ends with the body
    ("POST", "/predict", "application/json", b"{}", {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}),
    ("POST", "/predict", "application/json", b"{}", {"CONTENT_LENGTH": "9" * 5000}),  # no int() of that
])
def test_everything_else_goes_on_to_flask(client, flask_calls, method, path, content_type, data, environ):
    response = client.open(path, method=method, content_type=content_type, data=data, environ_overrides=environ)
    assert flask_calls == [path]
    assert response.status_code >= 400
    assert set(response.get_json()) == {"error", "detail"}


def test_a_json_suffix_media_type_and_charset_take_the_lane(client, experiment, flask_calls):
    body = json.dumps({"user_id": "u-suffix", "experiment": experiment, "features": IRIS})
    for content_type in ("application/vnd.api+json", "Application/JSON; charset=utf-8"):
        assert client.post("/predict", data=body, content_type=content_type).status_code == 200
    assert flask_calls == []


def test_a_refused_request_is_counted_and_leaves_an_error_event(client, overrides, experiment, app):
    response = client.post("/predict", json={"user_id": "u-404", "experiment": "missing", "features": IRIS})
    assert response.status_code == 404
    metrics_text = client.get("/metrics").get_data(as_text=True)
    assert 'abtest_http_requests_total{method="POST",route="/predict",status="404"}' in metrics_text

    app.extensions["ml_api"].events.flush()
    events = [json.loads(line) for line in Path(overrides["EVENT_FILE"]).read_text().splitlines()]
    errors = [e for e in events if e["event"]["action"] == "error"]
    assert len(errors) == 1
    assert errors[0]["url"]["path"] == "/predict"
    assert errors[0]["http"]["response"]["status_code"] == 404
    assert errors[0]["error"]["type"] == "unknown_experiment"


def test_an_unexpected_failure_is_a_500_envelope(app, client, experiment, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["ml_api"].catalog, "require", broken)
    response = client.post("/predict", json={"user_id": "u-500", "experiment": experiment, "features": IRIS})
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    assert "boom" not in response.get_data(as_text=True)  # logged, not shown
