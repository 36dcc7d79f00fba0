"""Statistics for sticky-assignment A/B experiments: pure functions, numbers in, numbers out.

Group ``a`` is always the control and ``b`` the variation; differences are ``b - a``.
Depends only on numpy and scipy.
"""

from .bayes import chance_to_beat_control
from .comparison import VariantComparison, compare_to_control
from .decision import (
    Action,
    Decision,
    GuardrailBreach,
    SequentialMonitor,
    Verdict,
    VariationLook,
    VariationVerdict,
    decide,
    decide_looks,
)
from .means import MeanSummary, WelchTest, welch_t_test
from .multiple import holm_adjust
from .power import (
    SampleSize,
    days_remaining,
    msprt_power,
    sample_size_classic,
    sample_size_cohen_h,
    sample_size_msprt,
)
from .proportions import ProportionTest, compare_proportions, difference_and_variance, z_test
from .sequential import (
    DEFAULT_TAU2,
    SequentialTest,
    always_valid_p_values,
    msprt_log_likelihood_ratio,
    msprt_half_width,
    msprt_two_proportions,
    tau2_for_mde,
)
from .srm import DEFAULT_SRM_THRESHOLD, SrmResult, sample_ratio_mismatch

__all__ = [
    "DEFAULT_SRM_THRESHOLD",
    "DEFAULT_TAU2",
    "Action",
    "Decision",
    "GuardrailBreach",
    "MeanSummary",
    "ProportionTest",
    "SampleSize",
    "SequentialMonitor",
    "SequentialTest",
    "SrmResult",
    "VariantComparison",
    "VariationLook",
    "VariationVerdict",
    "Verdict",
    "WelchTest",
    "always_valid_p_values",
    "chance_to_beat_control",
    "compare_proportions",
    "compare_to_control",
    "days_remaining",
    "decide",
    "decide_looks",
    "difference_and_variance",
    "holm_adjust",
    "msprt_log_likelihood_ratio",
    "msprt_half_width",
    "msprt_power",
    "msprt_two_proportions",
    "sample_ratio_mismatch",
    "sample_size_classic",
    "sample_size_cohen_h",
    "sample_size_msprt",
    "tau2_for_mde",
    "welch_t_test",
    "z_test",
]
