"""The requests the gateway accepts: bodies parsed and validated into typed requests.

Every refusal is an ``InvalidRequest`` whose message says what was wrong (the web layer
answers it with 400). Nothing here knows HTTP.
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from ml_api.errors import InvalidRequest
from ml_api.experiments.metrics import DEFAULT_FEEDBACK_METRIC
from ml_api.serving.inputs import Features, FeatureValue

REQUEST_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")
MAX_FEATURES = 1024
# scikit-learn's trees compute in float32, so no larger magnitude can be predicted; the
# bound also keeps linear models' sums finite (no NaN probabilities in the answer).
MAX_ABS_FEATURE = 3.4028234663852886e38
# Outcomes are summed and squared in MySQL DOUBLEs for the statistics; this keeps them finite.
MAX_ABS_OUTCOME = 1e12
MAX_LABEL_LENGTH = 255
# A category sent as a named feature (longer strings are no category any model was fitted on).
MAX_CATEGORY_LENGTH = 1000
FEATURES_FORMS = "a non-empty list of numbers, or a non-empty object {column: number, string, boolean or null}"


@dataclass(frozen=True)
class PredictRequest:
    user_id: str
    experiment: str
    features: Features


@dataclass(frozen=True)
class FeedbackRequest:
    outcome: float
    request_id: str | None = None
    user_id: str | None = None
    experiment: str | None = None
    label: str | None = None
    metric: str = DEFAULT_FEEDBACK_METRIC


def text_field(body: dict[str, Any], name: str, max_length: int, required: bool = True, why: str = "") -> str | None:
    """The body's ``name``: absent (None, or 400 when required), else a checked text."""
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name} is required{why}")
        return None
    return checked_text(name, value, max_length)


def checked_text(name: str, value: Any, max_length: int) -> str:
    """A non-blank string of at most ``max_length`` characters that is valid UTF-8 (body or path)."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidRequest(f"{name} must not be empty")
    if len(value) > max_length:
        raise InvalidRequest(f"{name} must be at most {max_length} characters, got {len(value)}")
    checked_unicode(name, value)
    return value


def checked_unicode(name: str, value: str) -> None:
    """Refuse a lone surrogate (JSON allows it, MySQL and the event pipeline cannot store it)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{name} is not valid Unicode text (lone surrogate)") from None


def checked_user_id(value: Any, max_length: int) -> str:
    """A user id: a checked text without leading or trailing whitespace.

    MySQL's collation compares ``"u-1"`` and ``"u-1 "`` as equal while the hash and Redis
    tell them apart, so such ids would share one record under two variants; they are refused."""
    user_id = checked_text("user_id", value, max_length)
    if user_id != user_id.strip():
        raise InvalidRequest("user_id must not begin or end with whitespace: send the id exactly as stored "
                             f"(got {json.dumps(user_id)[:60]})")
    return user_id


def user_id_field(body: dict[str, Any], max_length: int, required: bool = True, why: str = "") -> str | None:
    """The body's ``user_id`` (see ``checked_user_id``): absent is None, or refused when required."""
    value = body.get("user_id")
    if value is None:
        if required:
            raise InvalidRequest(f"user_id is required{why}")
        return None
    return checked_user_id(value, max_length)


def parse_features(body: dict[str, Any]) -> Features:
    """The body's ``features``: a list of finite numbers, or named values (checked against the models later)."""
    features = body.get("features")
    if features is None:
        raise InvalidRequest(f"features is required: {FEATURES_FORMS}")
    if isinstance(features, dict):
        return parse_named_features(features)
    if not isinstance(features, list) or not features:
        raise InvalidRequest(f"features must be {FEATURES_FORMS}")
    if len(features) > MAX_FEATURES:
        raise InvalidRequest(f"features may hold at most {MAX_FEATURES} numbers")
    for index, value in enumerate(features):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequest(f"features[{index}] must be a number, got {json.dumps(value)[:50]}")
        checked_number(f"features[{index}]", value)
    return [float(v) for v in features]


def parse_named_features(features: dict[str, Any]) -> dict[str, FeatureValue]:
    """Named values: numbers (finite), strings, booleans or null; which columns fit is the model's to say."""
    if not features:
        raise InvalidRequest(f"features must be {FEATURES_FORMS}")
    if len(features) > MAX_FEATURES:
        raise InvalidRequest(f"features may hold at most {MAX_FEATURES} columns")
    for name, value in features.items():
        where = f"features[{json.dumps(name)[:80]}]"
        if not name.strip():
            raise InvalidRequest("features has a column with an empty name")
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str):
            if len(value) > MAX_CATEGORY_LENGTH:
                raise InvalidRequest(f"{where} must be at most {MAX_CATEGORY_LENGTH} characters, got {len(value)}")
            checked_unicode(where, value)
        elif isinstance(value, (int, float)):
            checked_number(where, value)
        else:
            raise InvalidRequest(f"{where} must be a number, string, boolean or null, got {json.dumps(value)[:50]}")
    return features


def checked_number(where: str, value: int | float) -> None:
    """A finite number within float32's range (a range check: math.isfinite overflows on huge JSON integers)."""
    if not -MAX_ABS_FEATURE <= value <= MAX_ABS_FEATURE:
        raise InvalidRequest(f"{where} must be finite and at most {MAX_ABS_FEATURE:.4g} in magnitude, "
                             f"got {json.dumps(value)[:50]}")


def parse_predict(body: dict[str, Any], default_experiment: str, max_user_id_length: int) -> PredictRequest:
    """Validate a /predict body; stickiness needs a user id, so it is required."""
    user_id = user_id_field(
        body, max_user_id_length,
        why=": assignment is sticky per user, so every prediction needs the user id it is for",
    )
    experiment = text_field(body, "experiment", 64, required=False) or default_experiment
    return PredictRequest(user_id=user_id, experiment=experiment, features=parse_features(body))


def parse_feedback(body: dict[str, Any], default_experiment: str, max_user_id_length: int) -> FeedbackRequest:
    """Validate a /feedback body: an outcome (for ``metric``, default ``outcome``) and either a request id or a
    user id (+ experiment). Whether the experiment knows the metric is checked once the experiment is known."""
    outcome = body.get("outcome")
    if outcome is None:
        raise InvalidRequest("outcome is required: true/false or a number")
    if not isinstance(outcome, (bool, int, float)) or not -MAX_ABS_OUTCOME <= outcome <= MAX_ABS_OUTCOME:
        raise InvalidRequest(f"outcome must be true/false or a finite number of magnitude at most {MAX_ABS_OUTCOME:g}, "
                          f"got {json.dumps(outcome)[:50]}")
    label = parse_label(body)
    metric = text_field(body, "metric", 64, required=False) or DEFAULT_FEEDBACK_METRIC
    user_id = user_id_field(body, max_user_id_length, required=False)
    experiment = text_field(body, "experiment", 64, required=False)
    request_id = body.get("request_id")
    if request_id is not None:
        if not isinstance(request_id, str) or not REQUEST_ID_PATTERN.fullmatch(request_id):
            raise InvalidRequest("request_id must be the 32 hex characters returned by /predict")
        # user_id and experiment may come along; they must then name the request's own (checked on resolving)
        return FeedbackRequest(outcome=float(outcome), request_id=request_id, user_id=user_id, experiment=experiment,
                               label=label, metric=metric)
    if user_id is None:
        raise InvalidRequest("give either request_id, or user_id (and experiment, default DEFAULT_EXPERIMENT)")
    return FeedbackRequest(outcome=float(outcome), user_id=user_id, experiment=experiment or default_experiment,
                           label=label, metric=metric)


def parse_label(body: dict[str, Any]) -> str | None:
    """The optional true ``label`` of the predicted request (a class name or a number), as text."""
    label = body.get("label")
    if label is None:
        return None
    if isinstance(label, str):
        return text_field(body, "label", MAX_LABEL_LENGTH)
    if isinstance(label, bool) or not isinstance(label, (int, float)) or not -MAX_ABS_FEATURE <= label <= MAX_ABS_FEATURE:
        raise InvalidRequest(f"label must be a string or a finite number, got {json.dumps(label)[:50]}")
    return label_text(label)


def label_text(label: Any) -> str:
    """A predicted or true label as comparable text: 2.0 and 2 are both "2"."""
    if isinstance(label, float) and label.is_integer():
        label = int(label)
    return str(label)[:MAX_LABEL_LENGTH]
