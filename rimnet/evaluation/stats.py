"""Statistics of §2.7–2.8 as pure functions on arrays.

Convention everywhere: ``y_true`` in {0, 1} with 1 = rim+, and a *higher* score means rim+
(the direction pROC calls ``controls < cases``). A lesion is called rim+ when ``score >=
threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def _as_binary(y_true) -> np.ndarray:
    y = np.asarray(y_true).astype(int).ravel()
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError("y_true must contain only 0 and 1")
    if y.min() == y.max():
        raise ValueError("y_true needs both classes")
    return y


def _midrank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (O(n log n))."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = len(x)
    ranks = np.empty(n, dtype=float)
    i = 0
    while i < n:
        j = i
        while j < n and xs[j] == xs[i]:
            j += 1
        ranks[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    out = np.empty(n, dtype=float)
    out[order] = ranks
    return out


def delong_components(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and DeLong structural components of one or more scores on the same items.

    Fast O(n log n) midrank formulation of Sun & Xu (2014). ``scores`` is (n,) or (k, n).
    Returns ``(auc (k,), v10 (k, m), v01 (k, n_neg))`` where ``v10[r, i]`` is the placement of
    positive ``i`` among the negatives and ``v01[r, j]`` that of negative ``j`` among the positives.
    """
    y = _as_binary(y_true)
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    pos, neg = s[:, y == 1], s[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    aucs, v10, v01 = [], [], []
    for r in range(s.shape[0]):
        tx, ty = _midrank(pos[r]), _midrank(neg[r])
        tz = _midrank(np.concatenate([pos[r], neg[r]]))
        aucs.append((tz[:m].sum() / m - (m + 1) / 2) / n)
        v10.append((tz[:m] - tx) / n)
        v01.append(1.0 - (tz[m:] - ty) / m)
    return np.array(aucs), np.array(v10), np.array(v01)


def delong_covariance(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs (k,) and their DeLong covariance matrix (k, k)."""
    aucs, v10, v01 = delong_components(y_true, scores)
    m, n = v10.shape[1], v01.shape[1]
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


@dataclass(frozen=True)
class DeLongResult:
    """Paired DeLong test of two correlated ROC curves (pROC ``roc.test(method = "delong")``)."""

    z: float
    p_value: float
    auc_a: float
    auc_b: float


def delong_test(y_true, score_a, score_b) -> DeLongResult:
    """Paired DeLong test of AUC(a) = AUC(b) on the same lesions; two-sided p-value.

    Example:
        >>> y = [0, 0, 1, 1, 0, 1]
        >>> r = delong_test(y, [0.1, 0.4, 0.35, 0.8, 0.2, 0.7], [0.2, 0.1, 0.3, 0.6, 0.5, 0.4])
        >>> round(r.auc_a, 3), round(r.auc_b, 3)
        (0.889, 0.667)
    """
    aucs, cov = delong_covariance(y_true, np.vstack([score_a, score_b]))
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    diff = aucs[0] - aucs[1]
    if var <= 0:
        z = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    else:
        z = float(diff / np.sqrt(var))
    return DeLongResult(
        z=z, p_value=float(2 * stats.norm.sf(abs(z))), auc_a=float(aucs[0]), auc_b=float(aucs[1])
    )


def delong_ci(y_true, score, level: float = 0.95) -> tuple[float, float, float]:
    """``(low, auc, high)``: DeLong confidence interval of one AUC, clipped to [0, 1] as pROC
    does."""
    aucs, cov = delong_covariance(y_true, score)
    auc, se = float(aucs[0]), float(np.sqrt(cov[0, 0]))
    q = stats.norm.ppf(0.5 + level / 2)
    return max(0.0, auc - q * se), auc, min(1.0, auc + q * se)


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test with continuity correction; ``b``/``c`` are the discordant counts."""

    statistic: float
    p_value: float
    b: int
    c: int


def mcnemar_test(correct_a, correct_b) -> McNemarResult:
    """McNemar's chi-square with continuity correction on paired per-item booleans "was right".

    ``b`` = items only ``a`` got right, ``c`` = items only ``b`` got right;
    statistic ``(|b - c| - 1)² / (b + c)`` on 1 degree of freedom (R's ``mcnemar.test``).
    """
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    if a.shape != bb.shape:
        raise ValueError("correct_a and correct_b must have the same length")
    b = int((a & ~bb).sum())
    c = int((~a & bb).sum())
    if b + c == 0:
        return McNemarResult(0.0, 1.0, b, c)
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    return McNemarResult(float(stat), float(stats.chi2.sf(stat, 1)), b, c)


def threshold_at_specificity(y_true, score, specificity: float = 0.95) -> float:
    """Lowest threshold whose specificity (on these items) is at least ``specificity``.

    Lesions with ``score >= threshold`` are called rim+. At most ``floor((1 - specificity) ·
    n_negatives)`` negatives score at or above the threshold, and among such thresholds this one
    has the highest sensitivity. In this framework the threshold is chosen per cross-validation
    fold on that fold's test predictions (the fold's ROC curve at FPR 0.05), see docs/design.md.

    Example:
        >>> threshold_at_specificity([0] * 20 + [1] * 2, list(range(20)) + [30, 5], 0.95)
        19.000000000000004
    """
    y = _as_binary(y_true)
    s = np.asarray(score, dtype=float).ravel()
    neg = np.sort(s[y == 0])[::-1]
    allowed = int(np.floor((1 - specificity) * len(neg) + 1e-9))
    if allowed >= len(neg):
        return float(-np.inf)
    return float(np.nextafter(neg[allowed], np.inf))


def confusion_metrics(y_true, y_pred) -> dict[str, float]:
    """Accuracy, F1, sensitivity, specificity, PPV and NPV (fractions; NaN where undefined)."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(y_pred).astype(bool)
    tp, tn = int((y & p).sum()), int((~y & ~p).sum())
    fp, fn = int((~y & p).sum()), int((y & ~p).sum())

    def div(a: float, b: float) -> float:
        return a / b if b else float("nan")

    return {
        "accuracy": div(tp + tn, len(y)),
        "f1": div(2 * tp, 2 * tp + fp + fn),
        "sensitivity": div(tp, tp + fn),
        "specificity": div(tn, tn + fp),
        "ppv": div(tp, tp + fp),
        "npv": div(tn, tn + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def welch_t_test(a, b) -> tuple[float, float]:
    """Independent-samples t-test without assuming equal variances (§2.8): ``(t, two-sided p)``."""
    r = stats.ttest_ind(np.asarray(a, float), np.asarray(b, float), equal_var=False)
    return float(r.statistic), float(r.pvalue)


def two_proportion_z_test(
    x1: int, n1: int, x2: int, n2: int, alternative: str = "greater"
) -> tuple[float, float]:
    """Pooled two-proportion z-test of p1 vs p2; one-tailed (``greater``: p1 > p2) as in §3."""
    p1, p2 = x1 / n1, x2 / n2
    p = (x1 + x2) / (n1 + n2)
    se = np.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    z = (p1 - p2) / se if se > 0 else 0.0
    if alternative == "greater":
        pv = stats.norm.sf(z)
    elif alternative == "less":
        pv = stats.norm.cdf(z)
    else:
        pv = 2 * stats.norm.sf(abs(z))
    return float(z), float(pv)
