"""The paper's remaining figures and its supplementary table, in its style (Figs 3, 9, 10 and
Table S1), and the error examples the experts re-rated (§2.8).

Each function draws from the evaluation tables and returns what it drew (bar heights, rows), so
tests can check a figure's content against the data it came from.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rimnet.evaluation.stats import two_proportion_z_test  # noqa: E402

BURDEN = ("0", "1-3", ">=4")
CLASS_COLOURS = {"rim+": "#dc143c", "rim-": "#4682b4"}


def burden_classes(counts: pd.Series) -> pd.Series:
    """0, 1-3 or >=4 consensus rim+ lesions per patient (Fig. 3's classes)."""
    return pd.cut(counts, [-1, 0, 3, np.inf], labels=list(BURDEN)).astype(str)


def figure3(counts: pd.DataFrame, path: Path) -> dict[str, list[int]]:
    """Patients per site with 0, 1-3 and >= 4 consensus rim+ lesions; returns the bar heights per
    site."""
    table = counts.assign(burden=burden_classes(counts["true"]))
    sites = sorted(table["site"].unique())
    heights = {
        s: [int(((table.site == s) & (table.burden == b)).sum()) for b in BURDEN] for s in sites
    }
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    width = 0.8 / max(len(sites), 1)
    for n, s in enumerate(sites):
        x = np.arange(len(BURDEN)) + (n - (len(sites) - 1) / 2) * width
        bars = ax.bar(x, heights[s], width, label=f"{s} (n = {sum(heights[s])})")
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(range(len(BURDEN)), ["0", "1-3", "≥ 4"])
    ax.set_xlabel("consensus rim+ lesions per patient")
    ax.set_ylabel("patients")
    ax.set_title("Fig. 3: rim+ lesion burden per site")
    ax.legend(frameon=False)
    fig.savefig(path, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return heights


def figure9(op: pd.DataFrame, path: Path) -> dict[str, dict]:
    """Correct and incorrect predictions by class and by consensus needed vs agreed, with counts
    and the one-tailed two-proportion z-test that consensus-needed lesions are misclassified more
    often (§2.8); returns per class the four counts and the p-value."""
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.6))
    drawn = {}
    for ax, (label, name) in zip(axes, ((1, "rim+"), (0, "rim-"))):
        g = op[op["label"] == label]
        needed = g["consensus_needed"].astype(str).str.lower().isin(["true", "1"])
        wrong = g["pred"] != g["label"]
        cells = {
            "agreed": (int((~needed & ~wrong).sum()), int((~needed & wrong).sum())),
            "consensus": (int((needed & ~wrong).sum()), int((needed & wrong).sum())),
        }
        (ca, wa), (cc, wc) = cells["agreed"], cells["consensus"]
        p = (
            two_proportion_z_test(wc, cc + wc, wa, ca + wa)[1]
            if (cc + wc) and (ca + wa) and (wa + wc) and (ca + cc)
            else float("nan")
        )
        drawn[name] = {**{f"{k}_{w}": v for k, vs in cells.items()
                          for w, v in zip(("correct", "wrong"), vs)}, "p_value": p}  # fmt: skip
        x = np.arange(2)
        correct = [ca, cc]
        incorrect = [wa, wc]
        b1 = ax.bar(x, correct, 0.6, color="#8fbc8f", label="correct")
        b2 = ax.bar(x, incorrect, 0.6, bottom=correct, color=CLASS_COLOURS[name], label="wrong")
        ax.bar_label(b1, label_type="center", fontsize=8)
        ax.bar_label(b2, label_type="center", fontsize=8)
        ax.set_xticks(x, ["raters agreed", "consensus needed"])
        ptxt = "n/a" if np.isnan(p) else (f"{p:.4f}" if p >= 1e-4 else "< 0.0001")
        ax.set_title(f"{name}: error rate agreed vs consensus, p = {ptxt}", fontsize=9)
        ax.set_ylabel("lesions")
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle("Fig. 9: errors and rater consensus (one-tailed two-proportion z-test)")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return drawn


def figure10(location: pd.DataFrame, path: Path) -> dict[str, list]:
    """Lesions per location for rim+ and rim-, and accuracy/F1/PPV per location; returns the bar
    heights of both panels."""
    locs = location["location"].tolist()
    x = np.arange(len(locs))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    drawn: dict[str, list] = {}
    for n, cls in enumerate(("rim+", "rim-")):
        vals = location[cls].astype(int).tolist()
        bars = a.bar(x + (n - 0.5) * 0.38, vals, 0.38, color=CLASS_COLOURS[cls], label=cls)
        a.bar_label(bars, fontsize=8)
        drawn[cls] = vals
    a.set_xticks(x, locs, rotation=15)
    a.set_ylabel("lesions")
    a.set_title("lesions per location")
    a.legend(frameon=False)
    for n, metric in enumerate(("accuracy", "f1", "ppv")):
        vals = location[metric].astype(float).fillna(0.0).tolist()
        b.bar(x + (n - 1) * 0.27, vals, 0.27, label=metric.upper() if n else "accuracy")
        drawn[metric] = vals
    b.set_xticks(x, locs, rotation=15)
    b.set_ylim(0, 1.05)
    b.set_title("model performance per location")
    b.legend(frameon=False, fontsize=8)
    fig.suptitle("Fig. 10: lesion location")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return drawn


def table_s1(pw: pd.DataFrame) -> str:
    """Supplementary Table 1: patient-wise accuracy and F1 of the model and both experts at
    thresholds 1-6, with McNemar p-values of the model vs each expert (markdown)."""
    lines = [
        "| ≥ rim+ | model acc | model F1 | expert #1 acc | expert #1 F1 | expert #2 acc | "
        "expert #2 F1 | P model vs #1 | P model vs #2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t, g in pw.groupby("threshold"):
        row = g.set_index("who")

        def cell(who: str, col: str, row: pd.DataFrame = row) -> str:
            v = row[col].get(who, float("nan"))
            return "" if pd.isna(v) else (f"{100 * v:.1f}" if col != "p_value" else f"{v:.4f}")

        lines.append(
            f"| {t} | {cell('model', 'accuracy')} | {cell('model', 'f1')} | "
            f"{cell('rater1', 'accuracy')} | {cell('rater1', 'f1')} | "
            f"{cell('rater2', 'accuracy')} | {cell('rater2', 'f1')} | "
            f"{cell('model_vs_rater1', 'p_value')} | {cell('model_vs_rater2', 'p_value')} |"
        )
    return "\n".join(lines) + "\n"


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


def error_examples(
    errors: pd.DataFrame, patches: dict[str, np.ndarray], modalities: list[str], path: Path
) -> int:
    """Montage of the re-rating list: one column per lesion (false positives, then false
    negatives), one row per modality, the central axial slice of its patch; returns the number
    of lesions drawn."""
    shown = errors[errors["lesion_id"].isin(list(patches))]
    n = len(shown)
    if n == 0:
        return 0
    fig, axes = plt.subplots(
        len(modalities), n, figsize=(1.3 * n + 0.6, 1.4 * len(modalities) + 0.6), squeeze=False
    )
    for c, les in enumerate(shown.itertuples()):
        cube = patches[les.lesion_id]
        for r, m in enumerate(modalities):
            ax = axes[r, c]
            ax.imshow(np.flipud(cube[r][:, :, cube.shape[-1] // 2].T), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(m)
        colour = CLASS_COLOURS["rim-" if les.error == "false_positive" else "rim+"]
        kind = "FP" if les.error == "false_positive" else "FN"
        axes[0, c].set_title(f"{kind} p={les.prob:.2f}\n{les.lesion_id}", fontsize=6, color=colour)
    fig.suptitle("Highest-confidence errors (re-rating list)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight", format="png")
    plt.close(fig)
    return n
