"""Lesion-wise curves, operating points, patient-wise and error analyses (§2.7–2.8, §3).

Inputs are prediction tables with one row per test lesion and at least the columns ``label``
(consensus, 1 = rim+), ``prob`` (higher = rim+) and ``fold``; patient-wise and error analyses also
use ``patient_id``, ``rater1``, ``rater2``, ``consensus_needed`` and ``location``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from rimnet.evaluation.stats import (
    confusion_metrics,
    mcnemar_test,
    threshold_at_specificity,
    two_proportion_z_test,
    welch_t_test,
)

GRID = np.linspace(0.0, 1.0, 201)


def roc_on_grid(y_true, score, grid: np.ndarray = GRID) -> np.ndarray:
    """TPR at each FPR of ``grid``, piecewise-constant (the ROC step function, right-continuous)."""
    fpr, tpr, _ = roc_curve(y_true, score)
    idx = np.searchsorted(fpr, grid, side="right") - 1
    return tpr[np.clip(idx, 0, len(tpr) - 1)]


def pr_on_grid(y_true, score, grid: np.ndarray = GRID) -> np.ndarray:
    """Precision at each recall of ``grid``, piecewise-constant: the precision of the operating
    point
    with the smallest recall ≥ the grid value (highest threshold reaching that recall)."""
    precision, recall, _ = precision_recall_curve(y_true, score)
    order = np.argsort(recall, kind="stable")  # recall ascending
    r, p = recall[order], precision[order]
    idx = np.searchsorted(r, grid, side="left")
    return p[np.clip(idx, 0, len(p) - 1)]


@dataclass
class MeanCurves:
    """Fold-averaged ROC and PR curves of one configuration (Fig. 5)."""

    grid: np.ndarray
    tpr: np.ndarray
    tpr_std: np.ndarray
    precision: np.ndarray
    precision_std: np.ndarray
    fold_auc: dict
    fold_ap: dict
    auc: float  # mean of the fold AUCs (the paper's AUC)
    ap: float  # mean of the fold APs
    pooled_auc: float  # AUC of all folds' predictions pooled


def mean_curves(pred: pd.DataFrame, grid: np.ndarray = GRID) -> MeanCurves:
    """Per-fold ROC/PR on a common grid, averaged across folds."""
    tprs, precs, aucs, aps = [], [], {}, {}
    for fold, g in pred.groupby("fold"):
        if g["label"].nunique() < 2:
            continue
        tprs.append(roc_on_grid(g["label"], g["prob"], grid))
        precs.append(pr_on_grid(g["label"], g["prob"], grid))
        aucs[fold] = float(roc_auc_score(g["label"], g["prob"]))
        aps[fold] = float(average_precision_score(g["label"], g["prob"]))
    if not aucs:
        raise ValueError("no fold has both classes")
    t, p = np.array(tprs), np.array(precs)
    return MeanCurves(
        grid,
        t.mean(0),
        t.std(0),
        p.mean(0),
        p.std(0),
        aucs,
        aps,
        float(np.mean(list(aucs.values()))),
        float(np.mean(list(aps.values()))),
        float(roc_auc_score(pred["label"], pred["prob"])),
    )


def apply_operating_point(pred: pd.DataFrame, specificity: float = 0.95) -> pd.DataFrame:
    """Add ``threshold`` and ``pred`` (rim+ call) columns: threshold chosen per fold at
    ``specificity``."""
    thresholds = {
        fold: threshold_at_specificity(g["label"], g["prob"], specificity)
        for fold, g in pred.groupby("fold", sort=False)
    }
    out = pred.copy()
    out["threshold"] = out["fold"].map(thresholds).astype(float)
    out["pred"] = (out["prob"] >= out["threshold"]).astype(int)
    return out


def lesion_table(pred: pd.DataFrame) -> pd.DataFrame:
    """Table 3 rows: the model (needs ``pred``) and each expert, with McNemar p-values vs each
    expert."""
    rows = {"model": pred["pred"]}
    for r in ("rater1", "rater2"):
        if r in pred and (pred[r] >= 0).all():
            rows[r] = pred[r]
    y = pred["label"].to_numpy()
    out = []
    for name, p in rows.items():
        m = confusion_metrics(y, p)
        for r in ("rater1", "rater2"):
            if r in rows and r != name:
                m[f"p_vs_{r}"] = mcnemar_test(p.to_numpy() == y, rows[r].to_numpy() == y).p_value
        out.append({"rater": name, **m})
    return pd.DataFrame(out).set_index("rater")


def patient_counts(pred: pd.DataFrame) -> pd.DataFrame:
    """Per patient: true (consensus) rim+ count, the model's count and each rater's count."""
    cols = {"true": ("label", "sum"), "model": ("pred", "sum")}
    for r in ("rater1", "rater2"):
        if r in pred:
            cols[r] = (r, "sum")
    agg = (
        pred.assign(site=pred.get("site", ""))
        .groupby("patient_id")
        .agg(site=("site", "first"), **cols)
    )
    return agg


def patient_wise(counts: pd.DataFrame, thresholds=range(1, 7)) -> pd.DataFrame:
    """ "Chronic active" (≥ t rim+) classification per threshold: accuracy and F1 of model and
    raters,
    with McNemar p-values of the model vs each rater on the patients."""
    rows = []
    for t in thresholds:
        truth = counts["true"] >= t
        right = {}
        for who in [c for c in ("model", "rater1", "rater2") if c in counts]:
            call = counts[who] >= t
            m = confusion_metrics(truth, call)
            right[who] = (call == truth).to_numpy()
            rows.append(
                {
                    "threshold": t,
                    "who": who,
                    "accuracy": m["accuracy"],
                    "f1": m["f1"],
                    "tp": m["tp"],
                    "fp": m["fp"],
                    "tn": m["tn"],
                    "fn": m["fn"],
                }
            )
        for r in ("rater1", "rater2"):
            if r in right:
                rows.append(
                    {
                        "threshold": t,
                        "who": f"model_vs_{r}",
                        "p_value": mcnemar_test(right["model"], right[r]).p_value,
                    }
                )
    return pd.DataFrame(rows)


def consensus_error_analysis(pred: pd.DataFrame) -> pd.DataFrame:
    """Misclassification rates of lesions whose raters agreed vs needed consensus, per class, with
    Welch's t-test on the per-lesion error indicator (§2.8, Fig. 9)."""
    rows = []
    wrong = (pred["pred"] != pred["label"]).astype(float)
    for label, name in ((1, "rim+"), (0, "rim-")):
        agreed = wrong[(pred["label"] == label) & ~pred["consensus_needed"].astype(bool)]
        needed = wrong[(pred["label"] == label) & pred["consensus_needed"].astype(bool)]
        t, p = (
            welch_t_test(needed, agreed)
            if len(agreed) > 1 and len(needed) > 1
            else (float("nan"), float("nan"))
        )
        rows.append(
            {
                "class": name,
                "n_agreed": len(agreed),
                "error_agreed": agreed.mean() if len(agreed) else float("nan"),
                "n_consensus": len(needed),
                "error_consensus": needed.mean() if len(needed) else float("nan"),
                "t": t,
                "p_value": p,
            }
        )
    return pd.DataFrame(rows)


LOCATIONS = ("periventricular", "juxtacortical", "deep_wm", "other")


def location_analysis(pred: pd.DataFrame) -> pd.DataFrame:
    """Per location (every one of :data:`LOCATIONS`; scores NaN where there are no lesions):
    counts, accuracy, F1, PPV, and the one-tailed two-proportion z-test that rim+ lesions are
    more often in that location than rim- lesions (§3.3)."""
    n_pos, n_neg = int((pred["label"] == 1).sum()), int((pred["label"] == 0).sum())
    rows = []
    for loc in LOCATIONS:
        g = pred[pred["location"] == loc]
        nan = float("nan")
        m = (
            confusion_metrics(g["label"], g["pred"])
            if len(g)
            else {"accuracy": nan, "f1": nan, "ppv": nan}
        )
        x1, x2 = int((g["label"] == 1).sum()), int((g["label"] == 0).sum())
        z, p = (
            two_proportion_z_test(x1, n_pos, x2, n_neg)
            if n_pos and n_neg
            else (float("nan"), float("nan"))
        )
        rows.append(
            {
                "location": loc,
                "rim+": x1,
                "rim-": x2,
                "share_rim+": x1 / n_pos if n_pos else float("nan"),
                "share_rim-": x2 / n_neg if n_neg else float("nan"),
                "accuracy": m["accuracy"],
                "f1": m["f1"],
                "ppv": m["ppv"],
                "z": z,
                "p_one_tailed": p,
            }
        )
    return pd.DataFrame(rows)


BURDEN = ("0", "1-3", ">=4")


def burden_classes(counts: pd.Series) -> pd.Series:
    """0, 1-3 or >=4 consensus rim+ lesions per patient (Fig. 3's classes)."""
    return pd.cut(counts, [-1, 0, 3, np.inf], labels=list(BURDEN)).astype(str)


def burden_by_site(counts: pd.DataFrame) -> dict[str, list[int]]:
    """Patients per site in each of :data:`BURDEN` (``counts``: ``site``, ``true`` per
    patient)."""
    burden = burden_classes(counts["true"])
    return {
        s: [int(((counts["site"] == s) & (burden == b)).sum()) for b in BURDEN]
        for s in sorted(counts["site"].unique())
    }


def consensus_counts(op: pd.DataFrame) -> dict[str, dict]:
    """Per class, correct and wrong calls where the raters agreed and where they needed
    consensus, and the one-tailed two-proportion z-test that consensus-needed lesions are
    misclassified more often (§2.8, Fig. 9; NaN when a group is empty or all calls in both
    groups are right or all wrong)."""
    drawn = {}
    for label, name in ((1, "rim+"), (0, "rim-")):
        g = op[op["label"] == label]
        needed = g["consensus_needed"].astype(str).str.lower().isin(["true", "1"])
        wrong = g["pred"] != g["label"]
        ca, wa = int((~needed & ~wrong).sum()), int((~needed & wrong).sum())
        cc, wc = int((needed & ~wrong).sum()), int((needed & wrong).sum())
        defined = (cc + wc) and (ca + wa) and (wa + wc) and (ca + cc)
        p = two_proportion_z_test(wc, cc + wc, wa, ca + wa)[1] if defined else float("nan")
        drawn[name] = {
            "agreed_correct": ca,
            "agreed_wrong": wa,
            "consensus_correct": cc,
            "consensus_wrong": wc,
            "p_value": p,
        }
    return drawn


def chronic_active_confusion(counts: pd.DataFrame, threshold: int = 4) -> dict[str, np.ndarray]:
    """``[[tn, fp], [fn, tp]]`` of the chronic-active call (>= ``threshold`` rim+) of the model
    and of each rater present in ``counts`` (``true``, ``model``, ``rater1``, ``rater2``)."""
    truth = counts["true"] >= threshold
    out = {}
    for who in ("model", "rater1", "rater2"):
        if who in counts:
            m = confusion_metrics(truth, counts[who] >= threshold)
            out[who] = np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]])
    return out


def rerating_list(op: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    """The ``k`` highest-confidence false positives and false negatives at the operating point:
    what the paper's experts re-rated (§2.8)."""
    fp = op[(op["label"] == 0) & (op["pred"] == 1)].sort_values("prob", ascending=False).head(k)
    fn = op[(op["label"] == 1) & (op["pred"] == 0)].sort_values("prob").head(k)
    cols = [c for c in ("lesion_id", "patient_id", "site", "prob", "threshold", "fold", "label",
                        "rater1", "rater2", "consensus_needed", "location", "volume_mm3",
                        "center_i", "center_j", "center_k") if c in op]  # fmt: skip
    return pd.concat(
        [fp[cols].assign(error="false_positive"), fn[cols].assign(error="false_negative")],
        ignore_index=True,
    )
