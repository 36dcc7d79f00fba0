"""Turn the statistics into verdicts a team can act on: one per variation, one for the experiment.

Per variation, first match wins (a verdict already given stays, see "Final" below):

1. ``stop`` if it breaches a guardrail: it is doing harm, whatever its conversion rate.
2. ``ship`` if its always-valid (mSPRT) p-value, Holm-adjusted across variations, is
   below alpha and the always-valid interval lies on the better side of 0; ``stop`` if it
   lies on the worse side (significantly worse: take its traffic away).
3. ``no_effect`` if the always-valid interval lies inside +/- the planned MDE: an effect
   worth shipping is ruled out (futility, with sequentially valid evidence).
4. ``keep_running`` otherwise. Reaching a planned number of users is *not* a verdict: only
   the always-valid test decides, so the verdict does not depend on when anyone looked.

The experiment: ``stop`` on a sample ratio mismatch (the data is broken); else
``ship_variation`` when a variation is ``ship`` (the best, if several); else
``keep_control`` when every variation is concluded (``stop`` or ``no_effect``); else
``keep_running``, saying how many more users (and days) the always-valid test needs.

Final: pass the decision recorded so far as ``final``. A variation's verdict other than
``keep_running`` is kept as it was given (with its evidence), and so is an experiment
action other than ``keep_running``: later data is still shown, but cannot flip a verdict
a team may have acted on. ``SequentialMonitor`` carries the always-valid state and the
verdicts from look to look; the results document and the simulations both use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .comparison import VariantComparison
from .multiple import holm_adjust
from .power import SampleSize, days_remaining
from .sequential import SequentialTest, msprt_two_proportions
from .srm import SrmResult

Action = Literal["ship_variation", "keep_control", "keep_running", "stop"]
Verdict = Literal["ship", "stop", "no_effect", "keep_running"]
KEEP_RUNNING: Verdict = "keep_running"


@dataclass(frozen=True)
class GuardrailBreach:
    """A guardrail metric over its limit, e.g. fallback rate 0.07 > 0.05."""

    name: str
    observed: float
    limit: float
    unit: str = "%"  # "%": values are fractions shown as percentages; anything else is appended, e.g. " ms"
    variant: str | None = None  # the variation that breached; None: every variation

    def describe(self) -> str:
        """Human-readable form, e.g. 'fallback rate 7% > 5%'."""
        return f"{self.name} {self._show(self.observed)} > {self._show(self.limit)}"

    def _show(self, value: float) -> str:
        return _percent(value) if self.unit == "%" else f"{value:g}{self.unit}"


@dataclass(frozen=True)
class VariationLook:
    """One variation against the control at one look: what a verdict is made from."""

    variant: str
    users_control: int
    users_variant: int
    control_rate: float
    variant_rate: float
    sequential: SequentialTest
    p_value_holm: float  # the running always-valid p-value, Holm-adjusted across variations

    @classmethod
    def of(cls, c: VariantComparison) -> VariationLook:
        return cls(c.variant, c.users_control, c.users_variant, c.fixed.control_rate, c.fixed.variant_rate,
                   c.sequential, c.sequential_p_value_holm)

    def evidence(self) -> dict[str, Any]:
        """The numbers behind a verdict, kept with it when it becomes final."""
        seq = self.sequential
        return {"users_control": self.users_control, "users_variant": self.users_variant,
                "control_rate": self.control_rate, "variant_rate": self.variant_rate,
                "difference": seq.difference, "ci_low": seq.ci_low, "ci_high": seq.ci_high,
                "p_value_holm": self.p_value_holm, "current_ci_low": seq.current_ci_low,
                "current_ci_high": seq.current_ci_high, "drift": seq.drift, "tau2": seq.tau2, "alpha": seq.alpha}


@dataclass(frozen=True)
class VariationVerdict:
    """One variation's verdict, the sentence that explains it and the numbers it rests on."""

    variant: str
    verdict: Verdict
    reason: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.verdict != KEEP_RUNNING


@dataclass(frozen=True)
class Decision:
    """What to do with the experiment now, why, and each variation's verdict."""

    action: Action
    reason: str
    variant: str | None = None  # the variation to ship when action == "ship_variation"
    variations: tuple[VariationVerdict, ...] = ()

    @property
    def final(self) -> bool:
        return self.action != "keep_running"

    def verdict_of(self, variant: str) -> VariationVerdict | None:
        return next((v for v in self.variations if v.variant == variant), None)


def decide(
    comparisons: Sequence[VariantComparison],
    *,
    plan: SampleSize | None = None,
    srm: SrmResult | None = None,
    guardrail_breaches: Sequence[GuardrailBreach] = (),
    users_per_day_per_variant: float | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    final: Decision | None = None,
) -> Decision:
    """Verdicts from always-valid results, SRM and guardrails; ``plan`` gives the MDE and the users needed."""
    return decide_looks([VariationLook.of(c) for c in comparisons],
                        mde_absolute=abs(plan.absolute_effect) if plan else None, plan=plan, srm=srm,
                        guardrail_breaches=guardrail_breaches, users_per_day_per_variant=users_per_day_per_variant,
                        alpha=alpha, higher_is_better=higher_is_better, final=final)


def decide_looks(
    looks: Sequence[VariationLook],
    *,
    mde_absolute: float | None = None,
    plan: SampleSize | None = None,
    srm: SrmResult | None = None,
    guardrail_breaches: Sequence[GuardrailBreach] = (),
    users_per_day_per_variant: float | None = None,
    alpha: float = 0.05,
    higher_is_better: bool = True,
    final: Decision | None = None,
) -> Decision:
    """``decide`` on the looks themselves (the module docstring has the rules)."""
    if final is not None and final.final:
        return final
    verdicts = []
    for look in looks:
        given = final.verdict_of(look.variant) if final else None
        if given is not None and given.final:
            verdicts.append(given)
        else:
            breaches = [b for b in guardrail_breaches if b.variant in (None, look.variant)]
            verdicts.append(_variation_verdict(look, breaches, mde_absolute, alpha, higher_is_better))
    verdicts_t = tuple(verdicts)
    if srm is not None and srm.flagged:
        return Decision("stop", f"stop: sample ratio mismatch ({_p_text(srm.p_value)})", None, verdicts_t)
    by_name = {look.variant: look for look in looks}
    shipped = [v for v in verdicts_t if v.verdict == "ship"]
    if shipped:
        sign = 1.0 if higher_is_better else -1.0
        best = max(shipped, key=lambda v: sign * v.evidence.get("difference", by_name[v.variant].sequential.difference))
        return Decision("ship_variation", f"ship {best.variant}: {best.reason}", best.variant, verdicts_t)
    if verdicts_t and all(v.final for v in verdicts_t):
        return Decision("keep_control", "keep control: " + "; ".join(_named(v) for v in verdicts_t), None, verdicts_t)
    running = [by_name[v.variant] for v in verdicts_t if not v.final]
    users = min((min(look.users_control, look.users_variant) for look in running), default=0)
    reason = _keep_running_text(users, plan, users_per_day_per_variant)
    concluded = [_named(v) for v in verdicts_t if v.final]
    if concluded:
        reason += "; concluded: " + "; ".join(concluded)
    return Decision("keep_running", reason, None, verdicts_t)


def _variation_verdict(look: VariationLook, breaches: Sequence[GuardrailBreach], mde_absolute: float | None,
                       alpha: float, higher_is_better: bool) -> VariationVerdict:
    """Classify one variation from its guardrails and its always-valid, Holm-adjusted evidence."""
    if breaches:
        return VariationVerdict(look.variant, "stop", "guardrail breached: " + "; ".join(b.describe() for b in breaches),
                                look.evidence())
    seq = look.sequential
    if look.p_value_holm < alpha and seq.excludes_zero():
        # 0 lies outside the running interval exactly when its p-value is below alpha, so the
        # interval says which side the effect is on (never the estimate of another look).
        better = (seq.ci_low > 0) == higher_is_better
        text = _effect_text(look) if better else f"significantly worse: {_effect_text(look)}"
        return VariationVerdict(look.variant, "ship" if better else "stop", text, look.evidence())
    if mde_absolute is not None and seq.enough_data and -mde_absolute < seq.ci_low and seq.ci_high < mde_absolute:
        return VariationVerdict(
            look.variant, "no_effect",
            f"always-valid CI {_pp(seq.ci_low, unit=False)} to {_pp(seq.ci_high)}, inside +/-{mde_absolute * 100:.2f} pp:"
            " an effect as large as the MDE is ruled out", look.evidence())
    return VariationVerdict(look.variant, KEEP_RUNNING, f"undecided: {_effect_text(look)}", look.evidence())


class SequentialMonitor:
    """Looks at an experiment again and again: carries the always-valid state and the verdicts given.

    ``look`` takes the cumulative (conversions, users) of every variant, continues each
    variation's mSPRT from the previous look, Holm-adjusts across variations and decides
    with ``final`` = the decision so far, so verdicts stay once given.
    """

    def __init__(self, control: str, variations: Sequence[str], *, tau2: float, alpha: float = 0.05,
                 mde_relative: float | None = None, higher_is_better: bool = True,
                 final: Decision | None = None) -> None:
        self.control, self.variations = control, tuple(variations)
        self.tau2, self.alpha, self.mde_relative = tau2, alpha, mde_relative
        self.higher_is_better = higher_is_better
        self.tests: dict[str, SequentialTest] = {}
        self.decision: Decision | None = final

    def look(self, counts: Mapping[str, tuple[int, int]], *, srm: SrmResult | None = None,
             guardrail_breaches: Sequence[GuardrailBreach] = (), plan: SampleSize | None = None,
             users_per_day_per_variant: float | None = None) -> Decision:
        """Decide at this look (cumulative counts per variant) and remember the result for the next."""
        control_conversions, control_users = counts[self.control]
        for name in self.variations:
            last = self.tests.get(name)
            self.tests[name] = msprt_two_proportions(
                control_conversions, control_users, *counts[name], tau2=self.tau2, alpha=self.alpha,
                previous_p_value=last.p_value if last else 1.0,
                previous_ci=(last.ci_low, last.ci_high) if last else (-math.inf, math.inf))
        holm = holm_adjust([self.tests[n].p_value for n in self.variations])
        control_rate = control_conversions / control_users if control_users else math.nan
        looks = [VariationLook(n, control_users, counts[n][1], control_rate,
                               counts[n][0] / counts[n][1] if counts[n][1] else math.nan, self.tests[n], p)
                 for n, p in zip(self.variations, holm)]
        mde = self._mde_absolute(control_rate, plan)
        self.decision = decide_looks(looks, mde_absolute=mde, plan=plan, srm=srm, guardrail_breaches=guardrail_breaches,
                                     users_per_day_per_variant=users_per_day_per_variant, alpha=self.alpha,
                                     higher_is_better=self.higher_is_better, final=self.decision)
        return self.decision

    def _mde_absolute(self, control_rate: float, plan: SampleSize | None) -> float | None:
        """The futility band: the plan's MDE, else the relative MDE on the control's observed rate."""
        if plan is not None:
            return abs(plan.absolute_effect)
        if self.mde_relative is None or not 0.0 < control_rate < 1.0:
            return None
        return abs(control_rate * self.mde_relative)


def _named(v: VariationVerdict) -> str:
    return f"{v.variant}: {v.verdict.replace('_', ' ')} ({v.reason})"


def _effect_text(look: VariationLook) -> str:
    """'rate 10% -> 11.3% (+1.30 pp, always-valid 95% CI +0.40 to +2.20 pp, p=0.003)', and why an interval
    that excludes the estimate does so."""
    seq = look.sequential
    text = (
        f"rate {_percent(look.control_rate)} -> {_percent(look.variant_rate)} "
        f"({_pp(seq.difference)}, always-valid {_percent(1 - seq.alpha)} CI "
        f"{_pp(seq.ci_low, unit=False)} to {_pp(seq.ci_high)}, {_p_text(look.p_value_holm)})"
    )
    if seq.restarted:
        text += "; the effect moved over time: this look's interval missed the earlier looks', so the evidence restarted here"
    elif seq.drift:
        text += (f"; the effect moved over time: the estimate is outside the interval of all looks, this look alone "
                 f"gives {_pp(seq.current_ci_low, unit=False)} to {_pp(seq.current_ci_high)}")
    return text


def _keep_running_text(users: int, plan: SampleSize | None, users_per_day: float | None) -> str:
    """'not enough data: about 12,400 more users per variant needed (about 7 days at current traffic)'."""
    if plan is None:
        return f"not enough data: no significant difference yet after {users:,} users per variant"
    if users >= plan.users_per_variant:
        return (f"no verdict yet after {users:,} users per variant (the always-valid test needed about "
                f"{plan.users_per_variant:,} for {_percent(plan.power)} power at the MDE): the effect is probably "
                "smaller than the MDE, but not yet ruled out")
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
    return "n/a" if math.isnan(x) else f"{x * 100:.3g}%"


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
