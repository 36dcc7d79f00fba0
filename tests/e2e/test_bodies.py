"""Body size through the real gunicorn: MAX_BODY_BYTES holds for chunked bodies too (413, not a cut body)."""

import json

import pytest

LIMIT = 16384  # MAX_BODY_BYTES in api.env
IRIS = [5.1, 3.5, 1.4, 0.2]


def chunked(body: bytes, chunk: int = 1000):
    """A generator body: requests sends it with Transfer-Encoding: chunked and no Content-Length."""
    return (body[start:start + chunk] for start in range(0, len(body), chunk))


def padded(body: dict, size: int) -> bytes:
    """``body`` as JSON, padded with spaces (still valid JSON) to exactly ``size`` bytes."""
    text = json.dumps(body).encode()
    return text + b" " * (size - len(text))


@pytest.mark.parametrize("size,status", [(LIMIT, 200), (LIMIT + 1, 413), (5 * LIMIT, 413)])
def test_a_chunked_body_is_judged_by_its_whole_size(gateway, make_experiment, size, status):
    body = padded({"user_id": f"chunked-{size}", "experiment": make_experiment(), "features": IRIS}, size)
    response = gateway.session.post(f"{gateway.url}/predict", data=chunked(body),
                                    headers={"Content-Type": "application/json"}, timeout=10)
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert response.status_code == status, response.text
    if status == 413:
        assert response.json()["error"] == "request_entity_too_large"
        assert "MAX_BODY_BYTES" in response.json()["detail"]


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_read(gateway, make_experiment):
    body = padded({"user_id": "declared", "experiment": make_experiment(), "features": IRIS}, LIMIT + 1)
    response = gateway.session.post(f"{gateway.url}/predict", data=body,
                                    headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 413
