"""Parsing request bodies: one user id is one user, and a request id's user cannot be contradicted silently."""

import pytest

from ml_api.errors import InvalidRequest
from ml_api.serving.requests import parse_feedback, parse_predict

IRIS = [5.1, 3.5, 1.4, 0.2]
REQUEST_ID = "0" * 12 + "a" * 20


@pytest.mark.parametrize("user_id", ["u-1 ", " u-1", "u-1\t", "\nu-1", "u-1\u00a0"])
def test_user_ids_with_surrounding_whitespace_are_refused_everywhere(user_id):
    with pytest.raises(InvalidRequest, match="must not begin or end with whitespace"):
        parse_predict({"user_id": user_id, "features": IRIS}, "default", 128)
    with pytest.raises(InvalidRequest, match="must not begin or end with whitespace"):
        parse_feedback({"user_id": user_id, "outcome": 1}, "default", 128)


@pytest.mark.parametrize("user_id", ["u 1", "U-1", "caf\u00e9", "cafe\u0301", "\u00fcser"])
def test_inner_spaces_case_and_either_normalization_form_are_kept_as_sent(user_id):
    assert parse_predict({"user_id": user_id, "features": IRIS}, "default", 128).user_id == user_id


def test_a_missing_user_id_says_why_it_is_needed():
    with pytest.raises(InvalidRequest, match="user_id is required: assignment is sticky"):
        parse_predict({"features": IRIS}, "default", 128)


def test_feedback_keeps_a_user_id_and_experiment_sent_with_a_request_id_for_the_check():
    req = parse_feedback({"request_id": REQUEST_ID, "user_id": "u-1", "experiment": "e", "outcome": True}, "d", 128)
    assert (req.request_id, req.user_id, req.experiment) == (REQUEST_ID, "u-1", "e")
    alone = parse_feedback({"request_id": REQUEST_ID, "outcome": True}, "d", 128)
    assert (alone.user_id, alone.experiment) == (None, None), "the request id names them"
    by_user = parse_feedback({"user_id": "u-1", "outcome": 0.5}, "d", 128)
    assert (by_user.request_id, by_user.experiment) == (None, "d")


def test_feedback_names_its_metric_or_gets_the_default_one():
    assert parse_feedback({"user_id": "u", "outcome": 1}, "default", 128).metric == "outcome"
    assert parse_feedback({"request_id": REQUEST_ID, "outcome": 2.5, "metric": "revenue"}, "default", 128).metric \
        == "revenue"
    for metric, message in ((7, "metric must be a string"), ("", "metric must not be empty"),
                            ("m" * 65, "metric must be at most 64 characters")):
        with pytest.raises(InvalidRequest, match=message):
            parse_feedback({"user_id": "u", "outcome": 1, "metric": metric}, "default", 128)
