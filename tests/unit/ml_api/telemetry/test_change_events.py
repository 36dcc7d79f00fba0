"""The experiment_change event: what changed in one line, and nothing secret in the snapshots."""

from ml_api.experiments.changes import Committed, notify
from ml_api.telemetry import change_events

BEFORE = {"name": "x", "status": "running", "salt": "s3cret", "traffic_allocation": 1.0, "default_variant": "a",
          "variants": [{"name": "a", "weight": 50, "model": "logreg"}, {"name": "b", "weight": 50, "model": "forest"}],
          "overrides": {"qa-user@example.com": "b"}, "guardrails": {}}


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def emit(self, action: str, fields: dict) -> None:
        self.events.append((action, fields))


def test_the_summary_names_each_changed_leaf_with_variants_keyed_by_name() -> None:
    after = {**BEFORE, "status": "paused", "variants": [{"name": "a", "weight": 50, "model": "logreg"},
                                                        {"name": "b", "weight": 0, "model": "forest"}],
             "rollout": {"shadow": {"model": "forest", "percent": 5}, "ramp": None}}
    assert change_events.summarize(change_events.public(BEFORE), change_events.public(after)) == (
        "rollout.shadow.model: none → forest; rollout.shadow.percent: none → 5; status: running → paused; "
        "variants.b.weight: 50 → 0")


def test_a_creation_lists_the_definition_and_a_no_op_says_so() -> None:
    created = change_events.summarize(None, change_events.public(BEFORE))
    assert created.startswith("created: status=running, traffic_allocation=1, default_variant=a, variants.a.weight=50")
    assert change_events.summarize(BEFORE, BEFORE) == "definition unchanged"
    assert len(change_events.summarize(None, {"k": "x" * 5000})) == change_events.MAX_SUMMARY


def test_the_event_has_actor_before_and_after_without_salt_or_user_ids() -> None:
    events = Recorder()
    after = {**BEFORE, "overrides": {}}
    change_events.reporter(events)(Committed("x", "clear_override", "cli:dana", BEFORE, after))
    ((action, fields),) = events.events
    assert action == "experiment_change"
    assert fields["change"]["actor"] == "cli:dana" and fields["change"]["action"] == "clear_override"
    assert (fields["change"]["before"]["forced_users"], fields["change"]["after"]["forced_users"]) == (1, 0)
    assert fields["change"]["summary"] == "forced_users: 1 → 0"
    assert "s3cret" not in str(fields) and "qa-user@example.com" not in str(fields)


def test_a_failing_listener_never_undoes_a_committed_change(caplog) -> None:
    def broken(change: Committed) -> None:
        raise RuntimeError("no")

    notify(broken, Committed("x", "start", "cli:dana", BEFORE, BEFORE))
    assert "committed but not reported" in caplog.text
