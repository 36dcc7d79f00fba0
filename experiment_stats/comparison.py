"""A/B/n on a conversion metric: every variation against the control, Holm-corrected."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .bayes import chance_to_beat_control
from .multiple import holm_adjust
from .proportions import ProportionTest, compare_proportions
from .sequential import DEFAULT_TAU2, SequentialTest, msprt_two_proportions


@dataclass(frozen=True)
class VariantComparison:
    """All statistics for one variation vs the control, with p-values corrected across variations."""

    variant: str
    users_control: int
    users_variant: int
    fixed: ProportionTest  # single-look z-test; only valid if you look once
    sequential: SequentialTest  # always-valid; safe under continuous monitoring
    chance_to_beat_control: float
    p_value_holm: float  # fixed.p_value, Holm-adjusted across variations
    sequential_p_value_holm: float  # sequential.p_value, Holm-adjusted; what decide() uses


def compare_to_control(
    control: tuple[int, int],
    variants: Mapping[str, tuple[int, int]],
    *,
    alpha: float = 0.05,
    tau2: float = DEFAULT_TAU2,
    previous: Mapping[str, SequentialTest] | None = None,
) -> tuple[VariantComparison, ...]:
    """Compare each variation's (conversions, users) with the control's, Holm-adjusting across variations.

    ``previous`` maps a variation to its SequentialTest from the last peek, so the
    always-valid p-value and interval keep their running minimum / intersection.
    Holm's adjustment is valid for always-valid p-values too: at whatever time
    you stop, each one is a valid p-value, which is all Holm needs.
    """
    previous = previous or {}
    conversions_a, users_a = control
    fixed, sequential = {}, {}
    for name, (conversions_b, users_b) in variants.items():
        fixed[name] = compare_proportions(conversions_a, users_a, conversions_b, users_b, alpha)
        last = previous.get(name)
        sequential[name] = msprt_two_proportions(
            conversions_a,
            users_a,
            conversions_b,
            users_b,
            tau2=tau2,
            alpha=alpha,
            previous_p_value=last.p_value if last else 1.0,
            previous_ci=(last.ci_low, last.ci_high) if last else (float("-inf"), float("inf")),
        )
    names = list(variants)
    fixed_holm = holm_adjust([fixed[n].p_value for n in names])
    sequential_holm = holm_adjust([sequential[n].p_value for n in names])
    return tuple(
        VariantComparison(
            variant=name,
            users_control=users_a,
            users_variant=variants[name][1],
            fixed=fixed[name],
            sequential=sequential[name],
            chance_to_beat_control=chance_to_beat_control(conversions_a, users_a, *variants[name]),
            p_value_holm=fixed_holm[i],
            sequential_p_value_holm=sequential_holm[i],
        )
        for i, name in enumerate(names)
    )
