"""ROC and precision-recall curves: Fig. 5 (every configuration, mean over test folds) and Fig. 6
(the inter-center ensemble against cross-validation on the same lesions)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rimnet.figures import pyplot, save


def _finish(ax: Any, title: str) -> None:
    ax[0].plot([0, 1], [0, 1], ":", color="grey")
    ax[0].set(xlabel="False positive rate", ylabel="True positive rate", title="ROC")
    ax[1].set(xlabel="Recall", ylabel="Precision", title="Precision-recall")
    for a in ax:
        a.legend(fontsize=7, loc="lower right" if a is ax[0] else "lower left")
        a.set(xlim=(0, 1), ylim=(0, 1.02))
    ax[0].figure.suptitle(title)


FIG5_TITLE = "Fig. 5: mean ROC and PR over the test folds (AUC, AP: mean of the folds)"


def figure5(curves: dict[str, Any], path: Path, title: str = FIG5_TITLE) -> dict[str, float]:
    """Mean ROC and PR curves over the test folds, one line per configuration.

    Args:
        curves: label -> fold-averaged curves (``grid``, ``tpr``, ``precision``, ``auc``, ``ap``;
            :class:`rimnet.evaluation.analysis.MeanCurves`).
        path: the PNG to write.
        title: the figure's title.

    Returns:
        The AUC in each label's legend (the mean of the fold AUCs).
    """
    fig, ax = pyplot().subplots(1, 2, figsize=(11, 4.8))
    for name, mc in curves.items():
        ax[0].step(mc.grid, mc.tpr, where="post", label=f"{name} (AUC {mc.auc:.3f})")
        ax[1].step(mc.grid, mc.precision, where="post", label=f"{name} (AP {mc.ap:.3f})")
    _finish(ax, title)
    save(fig, path)
    return {name: mc.auc for name, mc in curves.items()}


def figure6(
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]],
    p_value: float | None,
    path: Path,
) -> None:
    """ROC and PR of models compared on the same lesions.

    Args:
        curves: label -> (grid, TPR on the grid, precision on the grid, AUC).
        p_value: DeLong's P of the two AUCs (None: not computed).
        path: the PNG to write.
    """
    fig, ax = pyplot().subplots(1, 2, figsize=(11, 4.8))
    for name, (grid, tpr, precision, auc) in curves.items():
        ax[0].step(grid, tpr, where="post", label=f"{name} (AUC {auc:.3f})")
        ax[1].step(grid, precision, where="post", label=name)
    title = "Fig. 6: RimNet on Lausanne lesions" + (
        f" (DeLong P = {p_value:.3f})" if p_value is not None else ""
    )
    _finish(ax, title)
    save(fig, path)
