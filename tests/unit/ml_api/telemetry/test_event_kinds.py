"""ECS categorization per kind of event, and event.duration in nanoseconds."""

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
