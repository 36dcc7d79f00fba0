"""The admin HTTP API on real MySQL: token checks, changes, refusals, history, events."""

import json
from pathlib import Path

import jsonschema
import pytest

from tests.paths import EVENT_SCHEMA

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}", "X-Actor": "alice"}
SCHEMA = json.loads(EVENT_SCHEMA.read_text())
VARIANTS = [{"name": "control", "weight": 50, "model": "logreg"}, {"name": "variation", "weight": 50, "model": "forest"}]


@pytest.fixture
def admin_app(make_app):
    return make_app(ADMIN_TOKEN=TOKEN)


@pytest.fixture
def admin(admin_app):
    return admin_app.test_client()


def create(admin, name, **extra):
    return admin.post("/admin/experiments", json={"name": name, "variants": VARIANTS, **extra}, headers=AUTH)


@pytest.mark.parametrize("method,path", [
    ("post", "/admin/experiments"),
    ("patch", "/admin/experiments/x"),
    ("post", "/admin/experiments/x/start"),
    ("put", "/admin/experiments/x/overrides/u1"),
    ("delete", "/admin/experiments/x/overrides/u1"),
    ("get", "/admin/experiments/x/history"),
])
def test_every_admin_call_needs_the_token(admin, method, path):
    missing = getattr(admin, method)(path, json={})
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.get_json()["detail"]
    wrong = getattr(admin, method)(path, json={}, headers={"Authorization": "Bearer guess"})
    assert wrong.status_code == 403 and wrong.get_json()["detail"] == "wrong admin token"


def test_an_empty_admin_token_disables_the_admin_api(client):
    response = client.post("/admin/experiments", json={}, headers={"Authorization": "Bearer "})
    assert response.status_code == 403 and "disabled" in response.get_json()["detail"]


def test_admin_token_disabled_turns_the_admin_api_off(make_app):
    response = make_app(ADMIN_TOKEN="disabled").test_client().post(
        "/admin/experiments", json={}, headers={"Authorization": "Bearer disabled"})
    assert response.status_code == 403 and "disabled" in response.get_json()["detail"]


def test_create_change_and_read_the_history(admin, overrides):
    assert create(admin, "adm-1", traffic_allocation=0.5, guardrails={"max_fallback_rate": 0.05}).status_code == 201
    assert admin.post("/admin/experiments/adm-1/start", headers=AUTH).get_json()["status"] == "running"
    changed = admin.patch("/admin/experiments/adm-1", json={"weights": {"control": 70, "variation": 30}}, headers=AUTH)
    assert [v["weight"] for v in changed.get_json()["variants"]] == [70, 30]
    assert admin.put("/admin/experiments/adm-1/overrides/qa:1", json={"variant": "variation"}, headers=AUTH).status_code == 200
    assert admin.delete("/admin/experiments/adm-1/overrides/qa:1", headers=AUTH).get_json()["overrides"] == {}
    assert admin.post("/admin/experiments/adm-1/pause", headers=AUTH).get_json()["status"] == "paused"

    history = admin.get("/admin/experiments/adm-1/history", headers=AUTH).get_json()["changes"]
    assert [h["action"] for h in history] == [
        "create", "set_guardrails", "start", "set_weights", "force_variant", "clear_override", "pause"]
    assert all(h["actor"] == "admin:alice" for h in history)
    assert history[1]["before"]["guardrails"] == {} and history[1]["after"]["guardrails"] == {"max_fallback_rate": 0.05}
    assert history[3]["before"]["variants"][0]["weight"] == 50 and history[3]["after"]["variants"][0]["weight"] == 70
    assert all(h["changed_at"].endswith("Z") for h in history)


def test_every_change_emits_a_valid_event_with_actor_before_and_after(admin_app, admin, overrides):
    create(admin, "adm-events")
    admin.post("/admin/experiments/adm-events/start", headers=AUTH)
    admin.put("/admin/experiments/adm-events/overrides/qa:secret", json={"variant": "variation"}, headers=AUTH)
    admin_app.extensions["ml_api"].events.flush()
    events = [json.loads(line) for line in Path(overrides["EVENT_FILE"]).read_text().splitlines()]
    changes = {e["change"]["action"]: e for e in events if e["event"]["action"] == "experiment_change"
               and e["experiment"]["name"] == "adm-events"}
    # The history's verbs; events reach the file in batches, not necessarily in the order they were emitted.
    assert sorted(changes) == ["create", "force_variant", "start"]
    start = changes["start"]["change"]
    assert start["actor"] == "admin:alice"
    assert (start["before"]["status"], start["after"]["status"]) == ("draft", "running")
    assert "status: draft → running" in start["summary"]
    assert "before" not in changes["create"]["change"] and changes["create"]["change"]["summary"].startswith("created:")
    forced = changes["force_variant"]["change"]
    assert (forced["before"]["forced_users"], forced["after"]["forced_users"]) == (0, 1)
    text = json.dumps(list(changes.values()))
    assert "qa:secret" not in text and "salt" not in text, "no user id and no salt leave the gateway"
    for event in changes.values():
        jsonschema.validate(event, SCHEMA)


@pytest.mark.parametrize("body,words", [
    ({"variants": VARIANTS}, ["name is required"]),
    ({"name": "bad name!", "variants": VARIANTS}, ["experiment name must be"]),
    ({"name": "v1", "variants": VARIANTS[:1]}, ["at least two"]),
    ({"name": "v2", "variants": [VARIANTS[0], {**VARIANTS[1], "weight": -1}]}, ["from 0 to 10000"]),
    ({"name": "v2b", "variants": [VARIANTS[0], {**VARIANTS[1], "weight": 1e400}]}, ["from 0 to 10000"]),
    ({"name": "v2c", "variants": [VARIANTS[0], {**VARIANTS[1], "model": {"a": 1}}]}, ["unknown model"]),
    ({"name": "v2d", "variants": VARIANTS, "default_variant": [None, None]}, ["default variant name must be"]),
    ({"name": "v2e", "variants": VARIANTS, "salt": {"x": 1}}, ["salt must be"]),
    ({"name": "v2f", "variants": VARIANTS, "salt": "s" * 65}, ["salt must be"]),
    ({"name": "v3", "variants": [VARIANTS[0], {**VARIANTS[1], "model": "../../etc/passwd"}]}, ["unknown model"]),
    ({"name": "v4", "variants": [VARIANTS[0], {**VARIANTS[0]}]}, ["unique"]),
    ({"name": "v5", "variants": VARIANTS, "traffic_allocation": 2}, ["between 0 and 1"]),
    ({"name": "v6", "variants": VARIANTS, "default_variant": "nope"}, ["default_variant"]),
    ({"name": "v7", "variants": VARIANTS, "guardrails": {"max_error_rate": 7}}, ["between 0 and 1"]),
    ({"name": "v8", "variants": VARIANTS, "guardrails": {"speed": 1}}, ["unknown guardrail"]),
])
def test_invalid_definitions_are_refused(admin, body, words):
    response = admin.post("/admin/experiments", json=body, headers=AUTH)
    assert 400 <= response.status_code < 500
    for word in words:
        assert word in response.get_json()["detail"]


def test_weights_must_name_every_variant(admin):
    create(admin, "adm-w")
    response = admin.patch("/admin/experiments/adm-w", json={"weights": {"control": 1}}, headers=AUTH)
    assert response.status_code == 422 and "exactly these variants" in response.get_json()["detail"]


def test_salt_is_frozen_once_started(admin):
    create(admin, "adm-salt")
    assert admin.patch("/admin/experiments/adm-salt", json={"salt": "new-salt"}, headers=AUTH).status_code == 200
    admin.post("/admin/experiments/adm-salt/start", headers=AUTH)
    response = admin.patch("/admin/experiments/adm-salt", json={"salt": "newer"}, headers=AUTH)
    assert response.status_code == 422 and "has started" in response.get_json()["detail"]


def test_unknown_experiment_and_unknown_fields(admin):
    assert admin.post("/admin/experiments/nope/start", headers=AUTH).status_code == 404
    create(admin, "adm-f")
    response = admin.patch("/admin/experiments/adm-f", json={"colour": "red"}, headers=AUTH)
    assert response.status_code == 400 and "colour" in response.get_json()["detail"]


INJECTIONS = ["' OR '1'='1", "x'); DROP TABLE experiments; --", "\" OR \"\"=\"", "1; SELECT SLEEP(5)"]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_sql_injection_strings_in_admin_fields_are_refused_or_stored_verbatim(admin, payload):
    assert create(admin, payload).status_code == 422  # names are restricted to [A-Za-z0-9_.-]
    create(admin, "adm-inj")
    forced = admin.put(f"/admin/experiments/adm-inj/overrides/{payload}", json={"variant": "control"}, headers=AUTH)
    assert forced.status_code == 200 and forced.get_json()["overrides"][payload] == "control"
    response = admin.put("/admin/experiments/adm-inj/overrides/u1", json={"variant": payload}, headers=AUTH)
    assert response.status_code == 422
    assert admin.get("/admin/experiments/adm-inj/history", headers={**AUTH, "X-Actor": payload}).status_code == 200


@pytest.mark.parametrize("method", ["put", "delete"])
@pytest.mark.parametrize("user_id,words", [("%20%20", "must not be empty"), ("u" * 129, "at most 128")])
def test_override_user_ids_follow_the_predict_rules(admin, method, user_id, words):
    create(admin, "adm-ovr")
    response = getattr(admin, method)(f"/admin/experiments/adm-ovr/overrides/{user_id}",
                                      json={"variant": "control"}, headers=AUTH)
    assert response.status_code == 400 and words in response.get_json()["detail"]
