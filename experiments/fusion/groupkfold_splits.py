"""A splits file from scikit-learn's ``GroupKFold`` over patients, for ``data.splits_file=``.

The framework's own splits (``rimnet.data.splits``) balance rim+ and rim- lesions per site and
fold. ``GroupKFold(4)`` instead balances the number of lesions per fold, as the independent checks
of the recipe did; the outer training set of each fold is split again by ``GroupKFold(3)`` into the
inner folds a splits file needs. Training on this file asks how much of a pooled AUC comes from
which patients test together:

    RIMNET_ROOT=/tmp/diag python experiments/fusion/groupkfold_splits.py \\
        /tmp/diag/data/splits/default-groupkfold.json
    RIMNET_ROOT=/tmp/diag rimnet train experiment=phase \\
        data.splits_file=/tmp/diag/data/splits/default-groupkfold.json ...

Needs the ``default`` cache (any ``rimnet train data=default`` run makes it).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from sklearn.model_selection import GroupKFold

from rimnet.data.cache import load_cache
from rimnet.data.contract import originals


def groupkfold_splits(patient: np.ndarray, outer: int = 4, inner: int = 3) -> dict:
    """Outer and inner folds of a splits file, from one patient id per (original) lesion.

    Example:
        >>> s = groupkfold_splits(np.array(["a", "a", "b", "c", "d", "d", "e", "f"]), 2, 2)
        >>> sorted(s["outer"][0]["test"] + s["outer"][1]["test"])
        ['a', 'b', 'c', 'd', 'e', 'f']
    """

    def split(rows: np.ndarray, k: int) -> list[tuple[list[str], list[str]]]:
        ids = patient[rows]
        folds = GroupKFold(k).split(rows, groups=ids)
        return [(sorted(map(str, set(ids[a]))), sorted(map(str, set(ids[b])))) for a, b in folds]

    splits: dict = {"outer": [], "inner": [], "outer_folds": outer, "inner_folds": inner}
    for train, test in split(np.arange(len(patient)), outer):
        splits["outer"].append({"train": train, "test": test})
        rows = np.flatnonzero(np.isin(patient, train))
        splits["inner"].append([{"train": t, "val": v} for t, v in split(rows, inner)])
    return splits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the splits file to write (must not exist)")
    args = ap.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists: give a new path")
    root = Path(os.environ.get("RIMNET_ROOT", ".")) / "data"
    lesions = originals(load_cache(root / "cache" / "default").lesions)
    splits = groupkfold_splits(lesions["patient_id"].astype(str).to_numpy())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(splits, indent=1))
    for k, fold in enumerate(splits["outer"]):
        test = lesions[lesions["patient_id"].isin(fold["test"])]
        print(f"fold {k}: test {fold['test']}, {len(test)} lesions, {test['label'].sum()} rim+")


if __name__ == "__main__":
    main()
