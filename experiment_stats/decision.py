"""Turn the statistics into one of four actions with a sentence a human can act on.

Rules, first match wins:

1. ``stop`` if the sample ratio mismatch check is flagged: the data is broken.
2. ``stop`` if any guardrail is breached: the variation is doing harm.
3. ``ship_variation`` if some variation is significantly better than the control
   on the always-valid (mSPRT) p-value, Holm-adjusted across variations; among
   several, the one with the largest observed improvement.
4. ``keep_control`` if every variation is either significantly worse, or its
   always-valid CI lies inside +/- the planned MDE (an effect worth shipping is ruled out).
5. ``keep_control`` if every variation has reached the planned sample size without
   a significant difference.
6. ``keep_running`` otherwise, saying how many more users (and days) the plan needs.

Ship / keep rest on the always-valid p-value and CI, so the decision can be
recomputed on every dashboard refresh without inflating false positives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .comparison import VariantComparison
from .power import SampleSize, days_remaining
from .srm import SrmResult

Action = Literal["ship_variation", "keep_control", "keep_running", "stop"]
_Verdict = Literal["better", "worse", "no_effect", "undecided"]


@dataclass(frozen=True)
class GuardrailBreach:
    """A guardrail metric over its limit, e.g. fallback rate 0.07 > 0.05."""

    name: str
    observed: float
    limit: float
    unit: str = "%"  # "%": values are fractions shown as percentages; anything else is appended, e.g. " ms"

    def describe(self) -> str:
        """Human-readable form, e.g. 'fallback rate 7% > 5%'."""
        return f"{self.name} {self._show(self.observed)} > {self._show(self.limit)}"

    def _show(self, value: float) -> str:
        return _percent(value) if self.unit == "%" else f"{value:g}{self.unit}"


@dataclass(frozen=True)
class Decision:
    """What to do with the experiment now, and why."""

    action: Action
    reason: str
    variant: str | None = None  # the variation to ship when action == "ship_variation"


def decide(
    comparisons: Sequence[VariantComparison],
    *,
    plan: SampleSize | None = None,
    srm: SrmResult | None = None,
    guardrail_breaches: Sequence[GuardrailBreach] = (),
    users_per_day_per_variant: float | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
) -> Decision:
    """Decide ship / keep control / keep running / stop from always-valid results, SRM and guardrails."""
    if srm is not None and srm.flagged:
        return Decision("stop", f"stop: sample ratio mismatch ({_p_text(srm.p_value)})")
    if guardrail_breaches:
        return Decision("stop", "stop: guardrail breached: " + "; ".join(b.describe() for b in guardrail_breaches))

    verdicts = [(c, _verdict(c, plan, alpha, higher_is_better)) for c in comparisons]
    winners = [c for c, v in verdicts if v == "better"]
    if winners:
        sign = 1.0 if higher_is_better else -1.0
        best = max(winners, key=lambda c: sign * c.sequential.difference)
        return Decision("ship_variation", f"ship {best.variant}: {_effect_text(best)}", best.variant)
    if verdicts and all(v in ("worse", "no_effect") for _, v in verdicts):
        details = "; ".join(_concluded_text(c, v, plan) for c, v in verdicts)
        return Decision("keep_control", f"keep control: {details}")

    users = min((min(c.users_control, c.users_variant) for c in comparisons), default=0)
    if plan is not None and users >= plan.users_per_variant:
        return Decision(
            "keep_control",
            f"keep control: no significant difference after {users:,} users per variant "
            f"(planned {plan.users_per_variant:,})",
        )
    return Decision("keep_running", _keep_running_text(users, plan, users_per_day_per_variant))


def _verdict(c: VariantComparison, plan: SampleSize | None, alpha: float, higher_is_better: bool) -> _Verdict:
    """Classify one variation from its always-valid, Holm-adjusted evidence."""
    seq = c.sequential
    if c.sequential_p_value_holm < alpha:
        # The always-valid CI excludes 0 once p < alpha; fall back to the point estimate if the
        # caller did not carry the interval over between peeks.
        up = seq.ci_low > 0 or (seq.ci_high >= 0 and seq.difference > 0)
        return "better" if up == higher_is_better else "worse"
    if plan is not None and seq.enough_data:
        mde = abs(plan.absolute_effect)
        if -mde < seq.ci_low and seq.ci_high < mde:
            return "no_effect"
    return "undecided"


def _effect_text(c: VariantComparison) -> str:
    """'rate 10% -> 11.3% (+1.30 pp, always-valid 95% CI +0.40 to +2.20 pp, p=0.003)'."""
    seq = c.sequential
    return (
        f"rate {_percent(c.fixed.control_rate)} -> {_percent(c.fixed.variant_rate)} "
        f"({_pp(seq.difference)}, always-valid {_percent(1 - seq.alpha)} CI "
        f"{_pp(seq.ci_low, unit=False)} to {_pp(seq.ci_high)}, {_p_text(c.sequential_p_value_holm)})"
    )


def _concluded_text(c: VariantComparison, verdict: _Verdict, plan: SampleSize | None) -> str:
    """Why one variation was ruled out."""
    if verdict == "worse":
        return f"{c.variant} is worse: {_effect_text(c)}"
    seq = c.sequential
    mde = abs(plan.absolute_effect) if plan else math.nan
    return (
        f"{c.variant} has no effect as large as the MDE "
        f"(always-valid CI {_pp(seq.ci_low, unit=False)} to {_pp(seq.ci_high)}, inside +/-{mde * 100:.2f} pp)"
    )


def _keep_running_text(users: int, plan: SampleSize | None, users_per_day: float | None) -> str:
    """'not enough data: about 12,400 more users per variant needed (about 7 days at current traffic)'."""
    if plan is None:
        return f"not enough data: no significant difference yet after {users:,} users per variant"
    missing = _round_significant(plan.users_per_variant - users)
    text = f"not enough data: about {missing:,} more users per variant needed"
    if users_per_day is not None:
        days = days_remaining(plan.users_per_variant, users, users_per_day)
        text += " (no traffic at the moment)" if math.isinf(days) else f" (about {_days(days)} at current traffic)"
    return text


def _days(days: float) -> str:
    whole = max(1, math.ceil(days))
    return f"{whole} day" if whole == 1 else f"{whole} days"


def _round_significant(x: float, digits: int = 3) -> int:
    """12,387 -> 12,400: the estimate is not precise to the user, so do not pretend it is."""
    if x <= 0:
        return 0
    return int(round(x, digits - 1 - math.floor(math.log10(x))))


def _percent(x: float) -> str:
    return f"{x * 100:.3g}%"


def _pp(x: float, unit: bool = True) -> str:
    return f"{x * 100:+.2f}" + (" pp" if unit else "")


def _p_text(p: float) -> str:
    """'p=0.012', 'p=1e-6', 'p<1e-300' - short, and never a misleading 'p=0'."""
    if math.isnan(p):
        return "p=n/a"
    if p >= 0.001:
        return f"p={p:.2g}"
    if p <= 0:
        return "p<1e-300"
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"p={mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
