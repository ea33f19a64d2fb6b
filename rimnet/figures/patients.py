"""Patient-wise figures: rim+ burden per site (Fig. 3), accuracy and F1 against the chronic-active
threshold (Fig. 7) and the chronic-active confusion matrices (Fig. 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rimnet.figures import pyplot, save

WHO = {"model": "RimNet", "rater1": "Expert #1", "rater2": "Expert #2"}


def figure3(heights: dict[str, list[int]], classes: list[str], path: Path) -> None:
    """Patients per site in each burden class (0, 1-3, >= 4 consensus rim+ lesions).

    Args:
        heights: site -> patients per class, in the order of ``classes``.
        classes: the class labels of the x axis.
        path: the PNG to write.
    """
    from matplotlib.ticker import MaxNLocator

    fig, ax = pyplot().subplots(figsize=(5.5, 3.6))
    width = 0.8 / max(len(heights), 1)
    for n, (site, h) in enumerate(heights.items()):
        x = np.arange(len(classes)) + (n - (len(heights) - 1) / 2) * width
        bars = ax.bar(x, h, width, label=f"{site} (n = {sum(h)})")
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(classes)), classes)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("consensus rim+ lesions per patient")
    ax.set_ylabel("patients")
    ax.set_title("Fig. 3: rim+ lesion burden per site")
    ax.legend(frameon=False)
    save(fig, path)


def figure7(patient_wise: dict[str, pd.DataFrame], path: Path) -> None:
    """Accuracy and F1 of the model and the experts against the rim+ count that calls a patient
    chronic active, one row per study section (``who``, ``threshold``, ``accuracy``, ``f1``)."""
    fig, ax = pyplot().subplots(
        len(patient_wise), 2, figsize=(10, 3.8 * len(patient_wise)), squeeze=False
    )
    for row, (section, table) in enumerate(patient_wise.items()):
        for col, metric in enumerate(("accuracy", "f1")):
            a = ax[row, col]
            for who, name in WHO.items():
                g = table[table.who == who]
                if not g.empty:
                    a.plot(g.threshold, 100 * g[metric], "o-", label=name)
            a.set(
                xlabel="rim+ lesions to call a patient chronic active",
                ylabel=f"{metric} (%)",
                title=f"{section}: {metric}",
                ylim=(0, 102),
                xticks=sorted(table.threshold.unique()),
            )
            a.legend(fontsize=8)
    fig.suptitle("Fig. 7: patient-wise analysis")
    fig.tight_layout()
    save(fig, path)


def figure8(matrices: dict[str, dict[str, np.ndarray]], threshold: int, path: Path) -> None:
    """Chronic-active confusion matrices, one row per section, one column per reader.

    Args:
        matrices: section -> reader (``model``, ``rater1``, ``rater2``) -> ``[[tn, fp], [fn,
            tp]]``; a missing reader leaves its panel empty.
        threshold: rim+ lesions that make a patient chronic active.
        path: the PNG to write.
    """
    fig, ax = pyplot().subplots(len(matrices), 3, figsize=(10, 3.4 * len(matrices)), squeeze=False)
    for row, (section, readers) in enumerate(matrices.items()):
        for col, (who, name) in enumerate(WHO.items()):
            a = ax[row, col]
            if who not in readers:
                a.axis("off")
                continue
            mat = np.asarray(readers[who])
            a.imshow(mat, cmap="Blues")
            for (i, j), v in np.ndenumerate(mat):
                colour = "white" if v > mat.max() / 2 else "black"
                a.text(j, i, str(v), ha="center", va="center", fontsize=12, color=colour)
            a.set_xticks([0, 1], ["non-CA", "CA"])
            a.set_yticks([0, 1], ["non-CA", "CA"])
            a.set(xlabel="predicted", ylabel="consensus", title=f"{section}: {name}")
    fig.suptitle(f"Fig. 8: chronic active (≥ {threshold} rim+) confusion matrices")
    fig.tight_layout()
    save(fig, path)
