"""``experiment_change`` events from committed changes: the one place every change path reports through.

The repository hands each committed change to ``reporter(events)``; the event carries who
(``change.actor``), what (``change.action`` and a one-line ``change.summary``) and the
definition before and after. Those snapshots are the history's, less what must not leave
the gateway: the salt (with it, anyone could recompute every user's variant) and the ids of
forced users (replaced by their number).
"""

from typing import Any

from ml_api.experiments.changes import Committed, Listener, Snapshot
from ml_api.telemetry import event_kinds
from ml_api.telemetry.events import EventEmitter

MAX_SUMMARY = 1000


def reporter(events: EventEmitter) -> Listener:
    """A repository listener that emits one ``experiment_change`` event per committed change."""

    def report(change: Committed) -> None:
        before = public(change.before) if change.before is not None else None
        after = public(change.after)
        events.emit(event_kinds.EXPERIMENT_CHANGE, event_kinds.change_fields(
            change.experiment, change.action, change.actor, summarize(before, after), before, after))

    return report


def public(snapshot: Snapshot) -> Snapshot:
    """The snapshot without the salt and with forced users counted rather than named."""
    shown = {key: value for key, value in snapshot.items() if key not in ("salt", "overrides", "name")}
    shown["forced_users"] = len(snapshot.get("overrides") or {})
    return shown


def summarize(before: Snapshot | None, after: Snapshot) -> str:
    """What changed, in one line: ``status: running → paused; variants.variation.weight: 50 → 0``.

    Variants are keyed by name, so a weight change reads as such rather than as a new list."""
    if before is None:
        text = "created: " + ", ".join(f"{path}={_show(value)}" for path, value in _flat(after).items())
    else:
        old, new = _flat(before), _flat(after)
        parts = [f"{path}: {_show(old.get(path))} → {_show(new.get(path))}"
                 for path in sorted(old.keys() | new.keys()) if old.get(path) != new.get(path)]
        text = "; ".join(parts) or "definition unchanged"
    return text if len(text) <= MAX_SUMMARY else text[:MAX_SUMMARY - 1] + "…"


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted paths to leaf values; a list of named objects is keyed by the names."""
    if isinstance(value, list) and value and all(isinstance(item, dict) and "name" in item for item in value):
        value = {item["name"]: {k: v for k, v in item.items() if k != "name"} for item in value}
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat |= _flat(item, f"{prefix}.{key}" if prefix else str(key))
        return flat
    return {prefix: value} if prefix else {}


def _show(value: Any) -> str:
    if value is None or value == {} or value == []:
        return "none"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # weights are stored as numbers: 50, not 50.0
    return str(value)
