"""Recipe ablations through the real ``rimnet train``: for each variant, seed and configuration,
one run per outer fold (``protocol=single``: trained on the outer training set less inner fold 0,
which selects the checkpoint; tested on the outer fold), pooled over the folds.

    python experiments/fusion/ablate.py --out /tmp/ablate --seeds 1 2 3 \\
        --experiments phase flair phase_flair --variants paper lr1e-3

Prints one row per (variant, configuration): the pooled AUC of each seed, their mean and spread,
and writes ``ablations.csv`` in ``--out``. Finished folds are reused (the sweep skips them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

# The recorded CPU budget of experiments/table3 (3 epochs, widths 8/16/32, no elastic copies).
BUDGET = ["data=default", "logger=csv", "data.preprocess.elastic_copies=0", "trainer.max_epochs=3"]
FAST_RATES = "schedule.rates=[1.0e-3,5.0e-4,2.5e-4,1.0e-4]"
VARIANTS = {
    "paper": [],  # the paper's staircase from 1e-4
    "lr1e-3": [FAST_RATES],
    "lr1e-3-e10": [FAST_RATES, "trainer.max_epochs=10"],
    "e10": ["trainer.max_epochs=10"],
    "lr1e-3-elastic1": [FAST_RATES, "data.preprocess.elastic_copies=1"],
    "lr1e-3-w16": [FAST_RATES, "model.net.widths=[16,32,64]"],
    "lr1e-3-nobottleneck": [FAST_RATES, "model.net.bottleneck=0"],
    "lr1e-3-balanced": [FAST_RATES, "class_weights=balanced"],
    # every training patch turned at random: orientation no longer tells rim+ (rotated) apart
    "rotate": ["data.loader.rotate=true"],
    "lr1e-3-rotate": [FAST_RATES, "data.loader.rotate=true"],
    "lr1e-3-rotate-e10": [FAST_RATES, "data.loader.rotate=true", "trainer.max_epochs=10"],
    "lr1e-3-rotate-e10-drop": [
        FAST_RATES,
        "data.loader.rotate=true",
        "trainer.max_epochs=10",
        "data.loader.modality_dropout=0.5",
    ],
    # where the modalities meet (the paper: early+late)
    "lr1e-3-late": [FAST_RATES, "model.net.fusion=late"],
    "lr1e-3-early": [FAST_RATES, "model.net.fusion=early"],
    "lr1e-3-stacked": [FAST_RATES, "model.net.fusion=stacked"],
    # original patches only (no offline rim+ rotations), classes weighted instead
    "orig-balanced-lr1e-3-e10": [
        FAST_RATES,
        "trainer.max_epochs=10",
        "data.loader.include_offline=false",
        "class_weights=balanced",
    ],
    "orig-balanced-e10": [
        "trainer.max_epochs=10",
        "data.loader.include_offline=false",
        "class_weights=balanced",
    ],
}


def run_variant(out: Path, variant: str, seed: int, experiments: list[str]) -> Path:
    """Sweep the folds of ``experiments`` for one variant and seed; returns the sweep folder."""
    sweep = out / variant / f"seed{seed}"
    cmd = [sys.executable, "-m", "rimnet.train", "-m", f"experiment={','.join(experiments)}",
           "fold=0,1,2,3", "protocol=single", f"seed={seed}", *BUDGET, *VARIANTS[variant],
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
    args = ap.parse_args()
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            t0 = time.perf_counter()
            sweep = run_variant(args.out, variant, seed, args.experiments)
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
