"""Statistics for sticky-assignment A/B experiments: pure functions, numbers in, numbers out.

Group ``a`` is always the control and ``b`` the variation; differences are ``b - a``.
Depends only on numpy and scipy.
"""

from .bayes import chance_to_beat_control
from .comparison import VariantComparison, compare_to_control
from .cuped import CupedComparison, compare_cuped
from .decision import (
    Action,
    Decision,
    DecisionOptions,
    GuardrailBreach,
    GuardrailTest,
    LookOptions,
    SequentialMonitor,
    Verdict,
    VariationLook,
    VariationVerdict,
    decide,
    decide_looks,
)
from .means import MeanSummary, WelchTest, welch_t_test
from .metrics import (
    METRIC_TYPES,
    MetricComparison,
    MetricType,
    Moments,
    compare_conversions,
    compare_means,
    compare_metric,
    compare_ratios,
)
from .multiple import holm_adjust
from .noninferiority import GuardrailStatus, NonInferiority, non_inferiority
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
    sequential_difference,
    tau2_for_mde,
    tau2_for_numeric_mde,
)
from .srm import DEFAULT_SRM_THRESHOLD, SrmResult, sample_ratio_mismatch

__all__ = [
    "DEFAULT_SRM_THRESHOLD",
    "DEFAULT_TAU2",
    "METRIC_TYPES",
    "Action",
    "CupedComparison",
    "Decision",
    "DecisionOptions",
    "GuardrailBreach",
    "GuardrailStatus",
    "GuardrailTest",
    "LookOptions",
    "MeanSummary",
    "MetricComparison",
    "MetricType",
    "Moments",
    "NonInferiority",
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
    "compare_conversions",
    "compare_cuped",
    "compare_means",
    "compare_metric",
    "compare_proportions",
    "compare_ratios",
    "compare_to_control",
    "days_remaining",
    "decide",
    "decide_looks",
    "difference_and_variance",
    "holm_adjust",
    "msprt_half_width",
    "msprt_log_likelihood_ratio",
    "msprt_power",
    "msprt_two_proportions",
    "non_inferiority",
    "sample_ratio_mismatch",
    "sample_size_classic",
    "sample_size_cohen_h",
    "sample_size_msprt",
    "sequential_difference",
    "tau2_for_mde",
    "tau2_for_numeric_mde",
    "welch_t_test",
    "z_test",
]
