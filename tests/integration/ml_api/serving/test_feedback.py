"""/feedback on real Redis and MySQL: a request id and a user id that disagree are refused, and every
distinct user id is a distinct user in the hash, Redis and MySQL alike."""

import unicodedata

from tests.netproxy import TcpProxy

IRIS = [5.1, 3.5, 1.4, 0.2]


def predict(client, experiment: str, user_id: str):
    return client.post("/predict", json={"user_id": user_id, "experiment": experiment, "features": IRIS})


def feedback(client, **body):
    return client.post("/feedback", json={"outcome": 1, **body})


def test_a_request_id_with_another_users_id_is_refused_and_nothing_is_stored(client, make_experiment, db):
    experiment = make_experiment()
    request_id = predict(client, experiment, "alice").get_json()["request_id"]
    predict(client, experiment, "bob")
    refused = feedback(client, request_id=request_id, user_id="bob")
    assert refused.status_code == 400 and "another user" in refused.get_json()["detail"]
    other = feedback(client, request_id=request_id, experiment=make_experiment())
    assert other.status_code == 400 and f"belongs to experiment {experiment!r}" in other.get_json()["detail"]
    accepted = feedback(client, request_id=request_id, user_id="alice", experiment=experiment)
    assert accepted.status_code == 202
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT user_id FROM outcomes WHERE request_id = %s", (request_id,))
        assert cursor.fetchall() == [("alice",)], "only the consistent outcome was stored, for its own user"


def test_ids_that_differ_by_trailing_space_case_or_normalization_are_never_one_record(client, make_experiment, db):
    experiment = make_experiment()
    composed = unicodedata.normalize("NFC", "jos\u00e9")
    decomposed = unicodedata.normalize("NFD", composed)
    users = ["padtest-3", "Padtest-3", composed, decomposed]
    for user in users:
        assert predict(client, experiment, user).status_code == 200
        assert feedback(client, user_id=user, experiment=experiment).status_code == 202
    spaced = predict(client, experiment, "padtest-3 ")
    assert spaced.status_code == 400 and "whitespace" in spaced.get_json()["detail"]
    assert feedback(client, user_id="padtest-3 ", experiment=experiment).status_code == 400
    with db.connection() as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT a.user_id, COUNT(o.feedback_id) FROM assignments a JOIN experiments e"
                       " ON e.id = a.experiment_id LEFT JOIN outcomes o ON o.experiment_id = a.experiment_id"
                       " AND o.user_id = a.user_id WHERE e.name = %s GROUP BY a.user_id", (experiment,))
        rows = dict(cursor.fetchall())
    assert sorted(rows) == sorted(users) and set(rows.values()) == {1}, rows


def test_a_served_user_whose_exposure_still_waits_in_the_spool_is_not_refused(app, client, make_experiment):
    """MySQL is back but has not received the exposure yet: the spool knows the user."""
    svc = app.extensions["ml_api"]
    experiment = svc.experiments.get(make_experiment())
    svc.spool.put("exposure", {"experiment_id": experiment.id, "user_id": "spooled-1", "variant": "variation",
                               "at": "2026-01-01T00:00:00"})
    accepted = feedback(client, user_id="spooled-1", experiment=experiment.name)
    assert accepted.status_code == 202 and accepted.get_json()["variant"] == "variation"
    assert feedback(client, user_id="never-served", experiment=experiment.name).status_code == 404


def test_with_mysql_away_a_user_nobody_reachable_knows_gets_retry_later_not_never_assigned(
        make_app, overrides, config, make_experiment):
    proxy = TcpProxy(config.mysql.host, config.mysql.port)
    try:
        app = make_app(MYSQL_PORT=str(proxy.port))
        svc, client = app.extensions["ml_api"], app.test_client()
        experiment = make_experiment()
        assert predict(client, experiment, "served-1").status_code == 200  # definitions loaded, user confirmed
        svc.redis.delete(*svc.redis.keys(f"{overrides['REDIS_KEY_PREFIX']}:*"))  # the cache was flushed
        proxy.cut()
        remembered = feedback(client, user_id="served-1", experiment=experiment)
        assert remembered.status_code == 202, "the worker's memory knows the served user"
        unknown = feedback(client, user_id="served-elsewhere", experiment=experiment)
        assert unknown.status_code == 503, unknown.get_json()
        assert unknown.get_json()["error"] == "dependencies_unavailable" and unknown.headers["Retry-After"] == "1"
        assert "MySQL" in unknown.get_json()["detail"]
    finally:
        proxy.close()
