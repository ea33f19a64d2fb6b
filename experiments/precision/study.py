"""What ``make train``'s recipe scores under each precision and recipe, over folds and seeds.

    RIMNET_ROOT=<root> python experiments/precision/study.py --out <dir> \\
        [--arms fp32 bf16-emulated default default-all] [--seeds 1 2 3] [--folds 0 1 2 3]

One ``rimnet train experiment=phase_flair`` (``make train``'s command: the ``default`` cohort,
its recipe) per arm, seed and outer fold, each in ``<out>/<arm>/seed<s>/fold<f>``; a run whose
``predictions.csv`` exists is skipped, so the study resumes where it stopped. Arms:

- ``fp32``: ``trainer.precision=32-true``, eager (``model.compile=false``);
- ``bf16-emulated``: the same through ``emulated_bf16.py`` (bfloat16 autocast's rounding in
  float32, for CPUs without native bfloat16);
- ``default``: the configs' defaults (precision and compilation as this machine's defaults
  choose them), i.e. exactly ``make train`` with ``seed=`` and ``fold=``;
- ``default-all``: the same on the whole outer training set with the final runs' fixed schedule
  (``inner_fold=null schedule.fixed_epochs=[6,0,0,0]``).

Prints, per arm, each seed's pooled AUC over its folds and the mean of the folds' AUCs (the
paper's, §2.7), and fold 0's AUROC (what ``make train`` prints) as mean ± sd and range over
seeds; writes ``runs.csv`` (one row per run, with its minutes) and ``summary.csv`` to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score

HERE = Path(__file__).resolve().parent
BASE = ["experiment=phase_flair", "logger=csv"]
ARMS = {
    "fp32": ([sys.executable, "-m", "rimnet.train"], ["trainer.precision=32-true",
                                                      "model.compile=false"]),
    "bf16-emulated": ([sys.executable, str(HERE / "emulated_bf16.py")],
                      ["trainer.precision=32-true", "model.compile=false"]),
    "default": ([sys.executable, "-m", "rimnet.train"], []),
    "default-all": ([sys.executable, "-m", "rimnet.train"],
                    ["inner_fold=null", "schedule.fixed_epochs=[6,0,0,0]"]),
}  # fmt: skip


def run(out: Path, arm: str, seed: int, fold: int) -> float | None:
    """Train and test one run unless its predictions exist; minutes taken (None: skipped)."""
    folder = out / arm / f"seed{seed}" / f"fold{fold}"
    if (folder / "predictions.csv").is_file():
        return None
    command, overrides = ARMS[arm]
    cmd = [*command, *BASE, *overrides, f"seed={seed}", f"fold={fold}",
           f"hydra.run.dir={folder}"]  # fmt: skip
    print("$", " ".join(cmd[1:]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ})
    return (time.perf_counter() - t0) / 60


def fold_auc(folder: Path) -> float:
    pred = pd.read_csv(folder / "predictions.csv")
    return float(roc_auc_score(pred["label"], pred["prob"]))


def summarise(out: Path, arms: list[str]) -> pd.DataFrame:
    """One row per (arm, seed): fold 0's AUROC, and with 4 folds the pooled AUC and their mean."""
    rows = []
    for arm in arms:
        for seed_dir in sorted((out / arm).glob("seed*"), key=lambda d: int(d.name[4:])):
            folds = sorted(f for f in seed_dir.glob("fold*") if (f / "predictions.csv").is_file())
            if not folds:  # a seed whose first run is still training
                continue
            aucs = {f.name: fold_auc(f) for f in folds}
            row = {"arm": arm, "seed": int(seed_dir.name[4:]), "fold0": aucs.get("fold0")}
            if len(folds) == 4:
                pred = pd.concat(pd.read_csv(f / "predictions.csv") for f in folds)
                row["pooled"] = float(roc_auc_score(pred["label"], pred["prob"]))
                row["mean_of_folds"] = sum(aucs.values()) / 4
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3], choices=range(4))
    ap.add_argument("--summary-only", action="store_true", help="train nothing, summarise")
    args = ap.parse_args()
    log = args.out / "runs.csv"
    if not args.summary_only:
        for seed in args.seeds:
            for fold in args.folds:
                for arm in args.arms:
                    minutes = run(args.out, arm, seed, fold)
                    if minutes is not None:
                        entry = pd.DataFrame([{"arm": arm, "seed": seed, "fold": fold,
                                               "minutes": round(minutes, 2)}])  # fmt: skip
                        entry.to_csv(log, mode="a", header=not log.exists(), index=False)
    table = summarise(args.out, args.arms)
    table.to_csv(args.out / "summary.csv", index=False)
    print(table.round(3).to_string(index=False))
    columns = [c for c in ("fold0", "pooled", "mean_of_folds") if c in table]
    stats = table.groupby("arm", sort=False)[columns].agg(["mean", "std", "min", "max"])
    print(stats.round(3).to_string())


if __name__ == "__main__":
    main()
