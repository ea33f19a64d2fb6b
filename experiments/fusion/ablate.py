"""Recipe ablations through the real ``rimnet train``: for each variant, seed and configuration,
one run per outer fold (``protocol=single``: trained on the outer training set less inner fold 0,
which selects the checkpoint, or on all of it with ``inner_fold=null``; tested on the outer fold),
pooled over the folds.

    python experiments/fusion/ablate.py --out /tmp/ablate --seeds 1 2 3 \\
        --experiments phase flair phase_flair --variants paper lr1e-3

Prints one row per (variant, configuration): the pooled AUC of each seed, their mean and spread,
and writes ``ablations.csv`` in ``--out``. ``--folds`` runs some outer folds only (a run is
repeated if asked again); the pooled AUC needs all four folds in the sweep folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

# The CPU budget of experiments/table3-paper-recipe (3 epochs, widths 8/16/32, no elastic copies).
BUDGET = ["data=default", "logger=csv", "data.preprocess.elastic_copies=0", "trainer.max_epochs=3"]
# Every variant names its rates and rotations, so it does not move when the defaults do.
PAPER = ["schedule.rates=[1.0e-4,5.0e-5,2.5e-5,1.0e-5]", "data.loader.rotate=false"]
FAST = ["schedule.rates=[1.0e-3,5.0e-4,2.5e-4,1.0e-4]", "data.loader.rotate=false"]
ROTATE = "data.loader.rotate=true"
E10 = "trainer.max_epochs=10"
RECIPE = [*FAST, ROTATE, E10]  # today's default recipe at 10 epochs (the last override wins)
VARIANTS = {
    "paper": PAPER,  # the paper's staircase from 1e-4, rim+ turned offline only
    "lr1e-3": FAST,
    "lr1e-3-e10": [*FAST, E10],
    "e10": [*PAPER, E10],
    "lr1e-3-elastic1": [*FAST, "data.preprocess.elastic_copies=1"],
    "lr1e-3-w16": [*FAST, "model.net.widths=[16,32,64]"],
    "lr1e-3-nobottleneck": [*FAST, "model.net.bottleneck=0"],
    "lr1e-3-balanced": [*FAST, "class_weights=balanced"],
    # every training patch turned at random: orientation no longer tells rim+ (rotated) apart
    "rotate": [*PAPER, ROTATE],
    "lr1e-3-rotate": [*FAST, ROTATE],
    "lr1e-3-rotate-e10": RECIPE,
    "lr1e-3-rotate-e10-drop": [*RECIPE, "data.loader.modality_dropout=0.5"],
    # where the modalities meet (the paper: early+late), under the default recipe at 10 epochs
    "lr1e-3-rotate-e10-late": [*RECIPE, "model.net.fusion=late"],
    "lr1e-3-rotate-e10-early": [*RECIPE, "model.net.fusion=early"],
    "lr1e-3-rotate-e10-stacked": [*RECIPE, "model.net.fusion=stacked"],
    "lr1e-3-rotate-e10-w16": [*RECIPE, "model.net.widths=[16,32,64]"],
    # make train's recipe: today's defaults with 3 elastic copies per training patch, 6 epochs
    "lr1e-3-rotate-elastic3-e6": [
        *FAST,
        ROTATE,
        "data.preprocess.elastic_copies=3",
        "trainer.max_epochs=6",
    ],
    # the same on the whole outer training set (no inner fold held out), 6 epochs at 1e-3, the
    # last weights tested: what a nested job's final run does
    "lr1e-3-rotate-elastic3-e6-all": [
        *FAST,
        ROTATE,
        "data.preprocess.elastic_copies=3",
        "inner_fold=null",
        "schedule.fixed_epochs=[6,0,0,0]",
    ],
    # the same at widths 16/32/64, and with the modalities meeting early only or late only
    "lr1e-3-rotate-elastic3-e6-all-w16": [
        *FAST,
        ROTATE,
        "data.preprocess.elastic_copies=3",
        "inner_fold=null",
        "schedule.fixed_epochs=[6,0,0,0]",
        "model.net.widths=[16,32,64]",
    ],
    "lr1e-3-rotate-elastic3-e6-all-early": [
        *FAST,
        ROTATE,
        "data.preprocess.elastic_copies=3",
        "inner_fold=null",
        "schedule.fixed_epochs=[6,0,0,0]",
        "model.net.fusion=early",
    ],
    "lr1e-3-rotate-elastic3-e6-all-late": [
        *FAST,
        ROTATE,
        "data.preprocess.elastic_copies=3",
        "inner_fold=null",
        "schedule.fixed_epochs=[6,0,0,0]",
        "model.net.fusion=late",
    ],
    # the same 6 epochs down the staircase (3 at 1e-3, then one at each lower rate): the last
    # weights come from a low rate instead of the first
    "lr1e-3-rotate-elastic3-e6-all-anneal": [
        *FAST,
        ROTATE,
        "data.preprocess.elastic_copies=3",
        "inner_fold=null",
        "schedule.fixed_epochs=[3,1,1,1]",
    ],
    # the same on the folds of scikit-learn's GroupKFold(4) over patients (as the independent
    # checks had them); write them first with groupkfold_splits.py
    "lr1e-3-rotate-elastic3-e6-all-groupkfold": [
        *FAST,
        ROTATE,
        "data.preprocess.elastic_copies=3",
        "inner_fold=null",
        "schedule.fixed_epochs=[6,0,0,0]",
        "data.splits_file=${paths.data_dir}/splits/default-groupkfold.json",
    ],
    # the same without the offline rim+ rotations (x10 copies of each rim+ lesion, which the
    # online rotations make redundant as views): elastic copies kept, classes weighted instead
    "lr1e-3-rotate-elastic3-e6-all-norot": [
        *FAST,
        ROTATE,
        "data.preprocess.elastic_copies=3",
        "inner_fold=null",
        "schedule.fixed_epochs=[6,0,0,0]",
        "data.loader.offline_rotations=false",
        "class_weights=balanced",
    ],
    # the same at 12 epochs: about as many optimiser steps as with the copies at 6
    "lr1e-3-rotate-elastic3-e12-all-norot": [
        *FAST,
        ROTATE,
        "data.preprocess.elastic_copies=3",
        "inner_fold=null",
        "schedule.fixed_epochs=[12,0,0,0]",
        "data.loader.offline_rotations=false",
        "class_weights=balanced",
    ],
    # no offline rim+ copies (each rim+ lesion seen once per epoch), classes weighted instead
    "lr1e-3-rotate-e10-orig": [
        *RECIPE,
        "data.loader.include_offline=false",
        "class_weights=balanced",
    ],
    # original patches only (no offline rim+ rotations), classes weighted instead
    "orig-balanced-lr1e-3-e10": [
        *FAST,
        E10,
        "data.loader.include_offline=false",
        "class_weights=balanced",
    ],
    "orig-balanced-e10": [
        *PAPER,
        E10,
        "data.loader.include_offline=false",
        "class_weights=balanced",
    ],
}


def run_variant(
    out: Path, variant: str, seed: int, experiments: list[str], folds: list[int]
) -> Path:
    """Sweep ``folds`` of ``experiments`` for one variant and seed; returns the sweep folder."""
    sweep = out / variant / f"seed{seed}"
    cmd = [sys.executable, "-m", "rimnet.train", "-m", f"experiment={','.join(experiments)}",
           f"fold={','.join(map(str, folds))}", "protocol=single", f"seed={seed}", *BUDGET,
           *VARIANTS[variant],
           f"hydra.sweep.dir={sweep}"]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return sweep


def pooled_auc(sweep: Path, experiment: str) -> float:
    files = sorted((sweep / experiment).glob("fold*/predictions.csv"))
    if len(files) != 4:
        return float("nan")
    pred = pd.concat(pd.read_csv(f) for f in files)
    return float(roc_auc_score(pred["label"], pred["prob"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--experiments", nargs="+", default=["phase", "flair", "phase_flair"])
    ap.add_argument("--variants", nargs="+", default=["paper", "lr1e-3"], choices=list(VARIANTS))
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3], choices=range(4))
    args = ap.parse_args()
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            t0 = time.perf_counter()
            sweep = run_variant(args.out, variant, seed, args.experiments, args.folds)
            minutes = (time.perf_counter() - t0) / 60
            for e in args.experiments:
                auc = pooled_auc(sweep, e)
                rows.append({"variant": variant, "experiment": e, "seed": seed, "auc": auc})
                print(f"{variant:22s} {e:14s} seed {seed}: pooled AUC {auc:.3f} "
                      f"(sweep {minutes:.1f} min)", flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "ablations.csv", index=False)
    summary = table.groupby(["variant", "experiment"], sort=False)["auc"].agg(["mean", "std"])
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
