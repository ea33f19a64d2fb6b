"""How much do the cached patches tell without a CNN? A linear probe on radial profiles.

For each modality, two numbers per 2-voxel shell around the patch centre (the mean and the standard
deviation of the shell's voxels): a profile that does not change when the patch is turned. A
logistic regression is trained on each outer fold's training patients (original patches only, the
same splits file as every ``rimnet train`` run) and tested on its test patients; the script prints
the AUC of each fold, their mean and the AUC pooled over the 4 folds, per set of modalities.
``--splits`` takes another splits file, e.g. one from ``groupkfold_splits.py``: the same probe on
another assignment of patients to folds. ``--per-patient`` z-scores each profile feature over each
patient's lesions before the probe: whether what varies between patients (site gain, bias field)
hides what the absolute intensities tell.

    RIMNET_ROOT=/tmp/diag python experiments/fusion/radial_probe.py \\
        [--splits <file>] [--per-patient]

Needs the ``default`` cache and splits (any ``rimnet train data=default`` run makes them).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rimnet.data.cache import load_cache
from rimnet.data.contract import center_crop, usable

SETS = [["phase"], ["flair"], ["phase", "flair"], ["t2star"], ["t2star", "flair"]]


def shell_index(size: int, width: float = 2.0) -> np.ndarray:
    """(S, S, S) integer map: the shell (distance from the centre // width) of each voxel.

    Example:
        >>> int(shell_index(4).max())
        1
    """
    r = np.arange(size) - (size - 1) / 2
    dist = np.sqrt(r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2)
    return (dist // width).astype(int)


def radial_profile(patches: np.ndarray, shells: np.ndarray) -> np.ndarray:
    """(N, S, S, S) → (N, 2 × shells): mean and std of each shell's voxels."""
    flat = patches.reshape(len(patches), -1)
    ids = shells.ravel()
    cols = [f(flat[:, ids == s], axis=1) for s in np.unique(ids) for f in (np.mean, np.std)]
    return np.stack(cols, axis=1)


def per_patient_zscore(feats: np.ndarray, patient: np.ndarray) -> np.ndarray:
    """(N, F) features → each column centred and scaled over each patient's rows.

    Example:
        >>> z = per_patient_zscore(np.array([[1.0], [3.0], [10.0], [30.0]]), np.array([0, 0, 1, 1]))
        >>> z.ravel().round(3).tolist()
        [-1.0, 1.0, -1.0, 1.0]
    """
    out = np.empty_like(feats, dtype=np.float64)
    for p in np.unique(patient):
        rows = patient == p
        out[rows] = (feats[rows] - feats[rows].mean(0)) / (feats[rows].std(0) + 1e-6)
    return out


def probe(feats: np.ndarray, label: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Out-of-fold probabilities: one logistic regression per outer fold, trained on the rest."""
    prob = np.zeros(len(label))
    for k in np.unique(fold):
        test = fold == k
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        model.fit(feats[~test], label[~test])
        prob[test] = model.predict_proba(feats[test])[:, 1]
    return prob


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = Path(os.environ.get("RIMNET_ROOT", ".")) / "data"
    ap.add_argument("--splits", type=Path, default=root / "splits" / "default.json")
    ap.add_argument("--per-patient", action="store_true", help="z-score features per patient")
    args = ap.parse_args()
    cache = load_cache(root / "cache" / "default")
    splits = json.loads(args.splits.read_text())
    fold_of = {p: k for k, f in enumerate(splits["outer"]) for p in f["test"]}
    les = cache.lesions
    rows = np.flatnonzero((usable(les) & (les["augmentation"] == "none")).to_numpy())
    label = les["label"].to_numpy()[rows].astype(int)
    fold = les["patient_id"].map(fold_of).to_numpy()[rows]
    size = int(cache.meta["params"]["patch_size"])
    shells = shell_index(size)
    names = list(cache.meta["modalities"])
    profiles = {}
    for c, name in enumerate(names):
        patches = np.stack([center_crop(np.asarray(cache.patches[r][c], np.float32)[None], size)[0]
                            for r in rows])  # fmt: skip
        profiles[name] = radial_profile(patches, shells)
        if args.per_patient:
            profiles[name] = per_patient_zscore(profiles[name], les["patient_id"].to_numpy()[rows])
    print(f"{len(rows)} lesions, {label.sum()} rim+, {shells.max() + 1} shells of 2 voxels")
    table = []
    for mods in [s for s in SETS if set(s) <= set(names)]:
        prob = probe(np.hstack([profiles[m] for m in mods]), label, fold)
        per_fold = [roc_auc_score(label[fold == k], prob[fold == k]) for k in np.unique(fold)]
        table.append({"modalities": " + ".join(mods),
                      **{f"fold {k}": round(a, 3) for k, a in enumerate(per_fold)},
                      "mean of folds": round(float(np.mean(per_fold)), 3),
                      "pooled": round(roc_auc_score(label, prob), 3)})  # fmt: skip
    print(pd.DataFrame(table).to_string(index=False))


if __name__ == "__main__":
    main()
