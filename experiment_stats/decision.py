"""Turn the statistics into verdicts a team can act on: one per variation, one for the experiment.

The verdicts are made on the primary metric, which may be a conversion rate, a mean or a
ratio (``VariationLook.metric``): only the always-valid test of its difference counts, so
the rules below are the same for every type.

Per variation, first match wins (a verdict already given stays, see "Final" below):

1. ``stop`` if it breaches a guardrail (``GuardrailBreach``: a threshold such as latency or
   error rate; ``GuardrailTest``: a guardrail metric whose non-inferiority test failed):
   it is doing harm, whatever its primary metric says.
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
from typing import Any, Literal, TypedDict, Unpack

from .comparison import VariantComparison
from .cuped import compare_cuped
from .metrics import MetricType, Moments, compare_metric
from .multiple import holm_adjust
from .noninferiority import NonInferiority
from .power import SampleSize, days_remaining
from .sequential import SequentialTest, msprt_two_proportions, sequential_difference
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
class GuardrailTest:
    """A guardrail metric's non-inferiority test for one variation; ``test.failed`` stops the variation."""

    name: str  # the metric, e.g. "p95 latency"
    variant: str
    test: NonInferiority
    unit: str = ""  # appended to numbers in the reason, e.g. " ms"

    def describe(self) -> str:
        """E.g. 'p95 latency worse than control by more than the margin 20 ms (always-valid bound +31 ms)'."""
        t = self.test
        return (f"{self.name} worse than control by more than the margin {t.margin:g}{self.unit} "
                f"(difference {t.difference:+.4g}{self.unit}, always-valid bound {t.bad_bound:+.4g}{self.unit})")


@dataclass(frozen=True)
class VariationLook:
    """One variation against the control at one look, on the primary metric: what a verdict is made from."""

    variant: str
    users_control: int
    users_variant: int
    control_value: float  # conversion rate, mean per user or ratio of sums
    variant_value: float
    sequential: SequentialTest  # always-valid test of variant_value - control_value
    p_value_holm: float  # the running always-valid p-value, Holm-adjusted across variations
    metric: MetricType = "conversion"  # how values and differences are shown (percentages for conversions)

    @classmethod
    def of(cls, c: VariantComparison) -> VariationLook:
        return cls(c.variant, c.users_control, c.users_variant, c.fixed.control_rate, c.fixed.variant_rate,
                   c.sequential, c.sequential_p_value_holm)

    def evidence(self) -> dict[str, Any]:
        """The numbers behind a verdict, kept with it when it becomes final (rates keep their old keys)."""
        seq = self.sequential
        values = ({"control_rate": self.control_value, "variant_rate": self.variant_value} if self.metric == "conversion"
                  else {"metric": self.metric, "control_value": self.control_value, "variant_value": self.variant_value})
        return {"users_control": self.users_control, "users_variant": self.users_variant, **values,
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


class LookOptions(TypedDict, total=False):
    """What a look brings besides the primary metric's numbers; every key is optional."""

    plan: SampleSize | None  # the planned MDE and users needed (conversion primary metric)
    srm: SrmResult | None
    guardrail_breaches: Sequence[GuardrailBreach]  # thresholds (latency, error rate) over their limit
    guardrail_tests: Sequence[GuardrailTest]  # non-inferiority guardrail metrics; failed ones stop a variation
    users_per_day_per_variant: float | None


class DecisionOptions(LookOptions, total=False):
    """What ``decide`` and ``decide_looks`` take besides the looks: a look's options and the test's settings."""

    alpha: float  # default 0.05
    higher_is_better: bool  # of the primary metric; default True
    final: Decision | None  # the decision recorded so far: its final verdicts are kept


def decide(comparisons: Sequence[VariantComparison], **options: Unpack[DecisionOptions]) -> Decision:
    """Verdicts from always-valid results, SRM and guardrails; ``plan`` gives the MDE and the users needed."""
    """Verdicts on a conversion metric from always-valid results, SRM and guardrails; ``plan`` gives the MDE."""
    plan = options.get("plan")
    return decide_looks([VariationLook.of(c) for c in comparisons],
                        mde_absolute=abs(plan.absolute_effect) if plan else None, **options)


def decide_looks(looks: Sequence[VariationLook], *, mde_absolute: float | None = None,
                 **options: Unpack[DecisionOptions]) -> Decision:
    """``decide`` on looks of any metric type (the module docstring has the rules); ``mde_absolute``: futility band."""
    unknown = set(options) - DecisionOptions.__optional_keys__
    if unknown:  # the keywords are one TypedDict, which Python does not check when called
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    final, srm, plan = options.get("final"), options.get("srm"), options.get("plan")
    alpha, higher_is_better = options.get("alpha", 0.05), options.get("higher_is_better", True)
    if final is not None and final.final:
        return final
    verdicts = []
    for look in looks:
        given = final.verdict_of(look.variant) if final else None
        if given is not None and given.final:
            verdicts.append(given)
        else:
            harm = [b.describe() for b in options.get("guardrail_breaches", ()) if b.variant in (None, look.variant)]
            harm += [t.describe() for t in options.get("guardrail_tests", ()) if t.variant == look.variant and t.test.failed]
            verdicts.append(_variation_verdict(look, harm, mde_absolute, alpha, higher_is_better))
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
    reason = _keep_running_text(users, plan, options.get("users_per_day_per_variant"))
    concluded = [_named(v) for v in verdicts_t if v.final]
    if concluded:
        reason += "; concluded: " + "; ".join(concluded)
    return Decision("keep_running", reason, None, verdicts_t)


def _variation_verdict(look: VariationLook, harm: Sequence[str], mde_absolute: float | None,
                       alpha: float, higher_is_better: bool) -> VariationVerdict:
    """Classify one variation from its guardrails (``harm``: what breached) and its always-valid, Holm-adjusted evidence."""
    if harm:
        return VariationVerdict(look.variant, "stop", "guardrail breached: " + "; ".join(harm), look.evidence())
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
            f"always-valid CI {_difference(look, seq.ci_low, unit=False)} to {_difference(look, seq.ci_high)}, inside "
            f"+/-{_difference(look, mde_absolute).lstrip('+')}: an effect as large as the MDE is ruled out", look.evidence())
    return VariationVerdict(look.variant, KEEP_RUNNING, f"undecided: {_effect_text(look)}", look.evidence())


class SequentialMonitor:
    """Looks at an experiment again and again: carries the always-valid state and the verdicts given.

    ``look`` takes the cumulative numbers of every variant on the primary metric, continues
    each variation's mSPRT from the previous look, Holm-adjusts across variations and decides
    with ``final`` = the decision so far, so verdicts stay once given. For a conversion metric
    the numbers are (conversions, users) (or ``Moments`` with y = 0/1); for a mean or ratio
    metric ``Moments``, compared with ``compare_metric``, or with ``compare_cuped`` when
    ``cuped`` (a mean metric with its pre-exposure covariate in x). ``tau2`` is in the
    metric's squared units (``tau2_for_mde``, ``tau2_for_numeric_mde``). The futility band is
    ``mde_absolute`` if given, else the plan's MDE, else ``mde_relative`` times the control's value.
    """

    def __init__(self, control: str, variations: Sequence[str], *, tau2: float, alpha: float = 0.05,
                 mde_relative: float | None = None, higher_is_better: bool = True,
                 final: Decision | None = None, metric: MetricType = "conversion",
                 mde_absolute: float | None = None, cuped: bool = False) -> None:
        if cuped and metric != "mean":
            raise ValueError(f"CUPED adjusts mean metrics only, not {metric!r}")
        self.control, self.variations = control, tuple(variations)
        self.tau2, self.alpha, self.mde_relative, self.mde_absolute = tau2, alpha, mde_relative, mde_absolute
        self.higher_is_better, self.metric, self.cuped = higher_is_better, metric, cuped
        self.tests: dict[str, SequentialTest] = {}
        self.decision: Decision | None = final

    def look(self, data: Mapping[str, tuple[int, int] | Moments], **options: Unpack[LookOptions]) -> Decision:
        """Decide at this look (cumulative numbers per variant) and remember the result for the next."""
        values = {n: self._value(data[n]) for n in (self.control, *self.variations)}
        for name in self.variations:
            self.tests[name] = self._test(data[self.control], data[name], self.tests.get(name))
        holm = holm_adjust([self.tests[n].p_value for n in self.variations])
        users = {n: _users(data[n]) for n in (self.control, *self.variations)}
        looks = [VariationLook(n, users[self.control], users[n], values[self.control], values[n], self.tests[n], p,
                               self.metric) for n, p in zip(self.variations, holm)]
        mde = self._futility_band(values[self.control], options.get("plan"))
        self.decision = decide_looks(looks, mde_absolute=mde, **options, alpha=self.alpha,
                                     higher_is_better=self.higher_is_better, final=self.decision)
        return self.decision

    def _test(self, control: tuple[int, int] | Moments, variant: tuple[int, int] | Moments,
              last: SequentialTest | None) -> SequentialTest:
        """This variation's always-valid test at this look, continued from its last one."""
        if self.metric == "conversion":
            return msprt_two_proportions(*_counts(control), *_counts(variant), tau2=self.tau2, alpha=self.alpha,
                                         previous_p_value=last.p_value if last else 1.0,
                                         previous_ci=(last.ci_low, last.ci_high) if last else (-math.inf, math.inf))
        if not isinstance(control, Moments) or not isinstance(variant, Moments):
            raise TypeError(f"a {self.metric} metric needs Moments per variant")
        fixed = (compare_cuped(control, variant, self.alpha).adjusted if self.cuped
                 else compare_metric(self.metric, control, variant, self.alpha))
        return sequential_difference(fixed.difference, fixed.variance, self.tau2, self.alpha, last)

    def _value(self, data: tuple[int, int] | Moments) -> float:
        """The variant's value on the metric (rate, mean or ratio; NaN without data), as shown in the reasons."""
        if isinstance(data, Moments):
            denominator = data.sum_x if self.metric == "ratio" else data.n
            return data.sum_y / denominator if denominator else math.nan
        conversions, users = data
        return conversions / users if users else math.nan

    def _futility_band(self, control_value: float, plan: SampleSize | None) -> float | None:
        """The futility band: the absolute MDE, else the plan's, else the relative MDE on the control's value."""
        if self.mde_absolute is not None:
            return abs(self.mde_absolute)
        if plan is not None:
            return abs(plan.absolute_effect)
        if self.mde_relative is None or not math.isfinite(control_value) or control_value == 0.0:
            return None
        if self.metric == "conversion" and not control_value < 1.0:
            return None
        return abs(control_value * self.mde_relative)


def _counts(data: tuple[int, int] | Moments) -> tuple[int, int]:
    """(conversions, users) of a conversion metric, from counts or from Moments of a 0/1 value."""
    return (round(data.sum_y), data.n) if isinstance(data, Moments) else data


def _users(data: tuple[int, int] | Moments) -> int:
    return data.n if isinstance(data, Moments) else data[1]


def _named(v: VariationVerdict) -> str:
    return f"{v.variant}: {v.verdict.replace('_', ' ')} ({v.reason})"


def _effect_text(look: VariationLook) -> str:
    """'rate 10% -> 11.3% (+1.30 pp, always-valid 95% CI +0.40 to +2.20 pp, p=0.003)' (or 'mean 2.5 -> 2.7 (+0.2, ...'),
    and why an interval that excludes the estimate does so."""
    seq = look.sequential
    label = {"conversion": "rate", "mean": "mean", "ratio": "ratio"}[look.metric]
    text = (
        f"{label} {_value(look, look.control_value)} -> {_value(look, look.variant_value)} "
        f"({_difference(look, seq.difference)}, always-valid {_percent(1 - seq.alpha)} CI "
        f"{_difference(look, seq.ci_low, unit=False)} to {_difference(look, seq.ci_high)}, {_p_text(look.p_value_holm)})"
    )
    if seq.restarted:
        text += "; the effect moved over time: this look's interval missed the earlier looks', so the evidence restarted here"
    elif seq.drift:
        text += (f"; the effect moved over time: the estimate is outside the interval of all looks, this look alone "
                 f"gives {_difference(look, seq.current_ci_low, unit=False)} to {_difference(look, seq.current_ci_high)}")
    return text


def _value(look: VariationLook, x: float) -> str:
    """A rate as a percentage, a mean or ratio with 4 significant digits."""
    return _percent(x) if look.metric == "conversion" else _number(x)


def _difference(look: VariationLook, x: float, unit: bool = True) -> str:
    """A difference of rates in percentage points, of means or ratios as a signed number."""
    return _pp(x, unit) if look.metric == "conversion" else _number(x, signed=True)


def _number(x: float, signed: bool = False) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.4g}" if signed else f"{x:.4g}"


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
