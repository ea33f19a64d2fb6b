"""Lesion-wise figures: errors against rater consensus (Fig. 9), lesion location (Fig. 10) and
the montage of the most confident errors (the paper's re-rating list, §2.8)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from rimnet.figures import COLOURS, pyplot, save

PER_ROW = 10  # lesions per row of the error montage


def _p_text(p: float) -> str:
    if np.isnan(p):
        return "no test (a group is empty, or nothing or everything is wrong)"
    return f"p = {p:.4f}" if p >= 1e-4 else "p < 0.0001"


def figure9(cells: dict[str, dict], path: Path) -> None:
    """Correct and wrong calls where the raters agreed and where they needed consensus, per class.

    Args:
        cells: class (``rim+``, ``rim-``) -> ``agreed_correct``, ``agreed_wrong``,
            ``consensus_correct``, ``consensus_wrong`` and the one-tailed ``p_value``
            (:func:`rimnet.evaluation.analysis.consensus_counts`).
        path: the PNG to write.
    """
    fig, axes = pyplot().subplots(1, len(cells), figsize=(4.6 * len(cells), 3.8), squeeze=False)
    for ax, (name, c) in zip(axes[0], cells.items()):
        x = np.arange(2)
        correct = [c["agreed_correct"], c["consensus_correct"]]
        wrong = [c["agreed_wrong"], c["consensus_wrong"]]
        b1 = ax.bar(x, correct, 0.6, color=COLOURS["correct"], label="correct")
        b2 = ax.bar(x, wrong, 0.6, bottom=correct, color=COLOURS["wrong"], label="wrong")
        for bars, values in ((b1, correct), (b2, wrong)):  # a zero segment has no label
            ax.bar_label(bars, [str(v) if v else "" for v in values], label_type="center",
                         fontsize=8)  # fmt: skip
        ax.set_xticks(x, ["raters agreed", "consensus needed"])
        ax.set_title(f"{name} lesions\nerror rate consensus > agreed: {_p_text(c['p_value'])}",
                     fontsize=9)  # fmt: skip
        ax.set_ylabel("lesions")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle("Fig. 9: errors and rater consensus (one-tailed two-proportion z-test)")
    fig.tight_layout()
    save(fig, path)


def figure10(location: pd.DataFrame, path: Path) -> dict[str, list]:
    """Lesions per location for rim+ and rim-, and accuracy/F1/PPV per location; a location
    without lesions, or without a defined score, is marked ``n/a``.

    Args:
        location: one row per location (``location``, ``rim+``, ``rim-``, ``accuracy``, ``f1``,
            ``ppv``; :func:`rimnet.evaluation.analysis.location_analysis`).
        path: the PNG to write.

    Returns:
        The bar heights of both panels (NaN where a score is undefined).
    """
    locs = location["location"].tolist()
    x = np.arange(len(locs))
    fig, (a, b) = pyplot().subplots(1, 2, figsize=(10, 3.8))
    drawn: dict[str, list] = {}
    for n, cls in enumerate(("rim+", "rim-")):
        vals = location[cls].astype(int).tolist()
        bars = a.bar(x + (n - 0.5) * 0.38, vals, 0.38, color=COLOURS[cls], label=cls)
        a.bar_label(bars, fontsize=8)
        drawn[cls] = vals
    a.set_xticks(x, locs, rotation=15)
    a.set_ylabel("lesions")
    a.set_title("lesions per location")
    a.legend(frameon=False)
    for n, metric in enumerate(("accuracy", "f1", "ppv")):
        vals = location[metric].astype(float).tolist()
        pos = x + (n - 1) * 0.27
        b.bar(pos, np.nan_to_num(vals), 0.27, label=metric.upper() if n else "accuracy")
        for xp, v in zip(pos, vals):
            if np.isnan(v):
                b.text(xp, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        drawn[metric] = vals
    b.set_xticks(x, locs, rotation=15)
    b.set(ylim=(0, 1.22), ylabel="score (0-1)", title="model performance per location")
    b.set_yticks(np.linspace(0, 1, 6))
    b.legend(frameon=False, fontsize=8, ncol=3, loc="upper center")
    fig.suptitle("Fig. 10: lesion location (n/a: no lesions there, or the score is undefined)")
    fig.tight_layout()
    save(fig, path)
    return drawn


def error_examples(
    errors: pd.DataFrame, patches: dict[str, np.ndarray], modalities: list[str], path: Path
) -> int:
    """Montage of the re-rating list: per lesion (false positives, then false negatives) the
    central axial slice of its patch in every modality, captioned with its probability and the
    threshold of its fold; at most :data:`PER_ROW` lesions per row.

    Args:
        errors: the re-rating list (``lesion_id``, ``error``, ``prob``, ``threshold``).
        patches: lesion id -> its patch, ``(modalities, D, D, D)``.
        modalities: the channel names of the patches.
        path: the PNG to write.

    Returns:
        The number of lesions drawn.
    """
    shown = errors[errors["lesion_id"].isin(list(patches))]
    n, m = len(shown), len(modalities)
    if n == 0:
        return 0
    cols, rows = min(n, PER_ROW), math.ceil(n / PER_ROW)
    fig, axes = pyplot().subplots(
        rows * m, cols, figsize=(1.6 * cols + 0.8, (1.6 * m + 0.5) * rows + 0.6), squeeze=False
    )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_frame_on(False)
    for idx, les in enumerate(shown.itertuples()):
        block, c = divmod(idx, PER_ROW)
        cube = patches[les.lesion_id]
        for r, name in enumerate(modalities):
            ax = axes[block * m + r, c]
            ax.imshow(np.flipud(cube[r][:, :, cube.shape[-1] // 2].T), cmap="gray")
            if c == 0:
                ax.set_ylabel(name, fontsize=9)
        fp = les.error == "false_positive"
        threshold = f", t = {les.threshold:.2f}" if hasattr(les, "threshold") else ""
        axes[block * m, c].set_title(
            f"{'FP' if fp else 'FN'}: p = {les.prob:.2f}{threshold}\n{les.lesion_id}",
            fontsize=8,
            color=COLOURS["rim-" if fp else "rim+"],
        )
    fig.suptitle(
        "Most confident errors (re-rating list); FP: rim- called rim+, FN: rim+ missed; t: the "
        "fold's threshold (95 % specificity)",
        fontsize=9,
    )
    fig.tight_layout()
    save(fig, path)
    return n
