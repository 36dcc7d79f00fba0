"""/feedback on real Redis and MySQL: a request id and a user id that disagree are refused, and every
distinct user id is a distinct user in the hash, Redis and MySQL alike."""

import unicodedata

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
