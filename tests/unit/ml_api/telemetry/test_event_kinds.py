"""ECS categorization per kind of event, and event.duration in nanoseconds."""

from assigner import Experiment, Variant
from ml_api.telemetry import event_kinds


def test_a_change_is_a_configuration_creation_or_change() -> None:
    created = event_kinds.change_fields("x", "create", "cli:dana", "created: …", None, {"status": "draft"})
    changed = event_kinds.change_fields("x", "start", "cli:dana", "status: draft → running", {}, {})
    assert created["event"] | {"type": None} == {"outcome": "success", "kind": "event", "category": ["configuration"],
                                                 "type": None}
    assert (created["event"]["type"], changed["event"]["type"]) == (["creation"], ["change"])


def test_a_breach_is_an_alert_and_durations_are_nanoseconds() -> None:
    breach = event_kinds.breach_fields("x", "b", "max_error_rate", 0.2, 0.05, 300, "too many errors")
    assert (breach["event"]["kind"], breach["event"]["outcome"]) == ("alert", "failure")
    assert event_kinds.ecs_event("success", "event", ["web"], ["access"], 4.0205)["duration"] == 4_020_500
    assert "duration" not in event_kinds.ecs_event("success", "event", ["web"], ["access"])


def test_a_variant_weight_is_its_share_of_the_configured_weights() -> None:
    experiment = Experiment("x", "salt", (Variant("control", 70, "logreg"), Variant("variation", 30, "forest")),
                            "control")
    assert event_kinds.variant_weight(experiment, "control") == 0.7
    assert event_kinds.variant_weight(experiment, "variation") == 0.3
    assert event_kinds.variant_weight(experiment, "gone") is None
    stopped = Experiment("x", "salt", (Variant("control", 0, "logreg"), Variant("variation", 0, "forest")), "control")
    assert event_kinds.variant_weight(stopped, "control") is None
