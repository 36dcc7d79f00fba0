"""Input checks and critical values shared by the statistics modules."""

from __future__ import annotations

from scipy.special import ndtri


def check_alpha(alpha: float) -> None:
    """Reject significance levels outside (0, 1): they are caller bugs, not data problems."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def check_counts(conversions: int, users: int) -> None:
    """Reject impossible binomial counts; zero users is allowed and means 'no data yet'."""
    if users < 0 or conversions < 0 or conversions > users:
        raise ValueError(f"need 0 <= conversions <= users, got {conversions!r} of {users!r}")


def z_critical(alpha: float) -> float:
    """Two-sided standard-normal critical value z_{1-alpha/2} (what norm.isf computes, without its per-call overhead)."""
    return float(-ndtri(alpha / 2.0))
