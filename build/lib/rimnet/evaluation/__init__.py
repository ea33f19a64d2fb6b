"""Evaluation: pure statistics (DeLong, McNemar, operating point) and lesion/patient-wise
analyses."""

from rimnet.evaluation.stats import (
    confusion_metrics,
    delong_ci,
    delong_test,
    mcnemar_test,
    threshold_at_specificity,
    two_proportion_z_test,
    welch_t_test,
)

__all__ = [
    "confusion_metrics",
    "delong_ci",
    "delong_test",
    "mcnemar_test",
    "threshold_at_specificity",
    "two_proportion_z_test",
    "welch_t_test",
]
