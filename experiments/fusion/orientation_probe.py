"""Can a patch's orientation be read from its voxels? A probe on the cached rim+ patches.

The paper's offline augmentation turns rim+ patches only (90/180/270 degrees about each axis), so in
a training set every turned patch is rim+. If an upright patch can be told from a turned one, the
network can learn "turned means rim+", a cue that no test patch (all upright) carries.

For each modality, three numbers per patch, one per axis: the mean squared difference between
neighbouring voxels along that axis (sorted by nothing: axis 0, 1, 2 stay in place). A logistic
regression, 4 folds grouped by patient, separates the upright rim+ patches from their copies
turned about each axis; an AUC near 0.5 means the orientation is not visible.

    RIMNET_ROOT=/tmp/diag python experiments/fusion/orientation_probe.py

Needs the ``default`` cache (any ``rimnet train data=default`` run makes it).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rimnet.data.cache import load_cache
from rimnet.data.contract import center_crop, usable


def axis_roughness(patches: np.ndarray) -> np.ndarray:
    """(N, S, S, S) → (N, 3): mean squared neighbour difference along each axis."""
    return np.stack([(np.diff(patches, axis=a + 1) ** 2).mean(axis=(1, 2, 3)) for a in range(3)], 1)


def upright_vs_turned(feats: np.ndarray, turned: np.ndarray, groups: np.ndarray) -> float:
    """Cross-validated AUC (folds grouped by patient) of telling turned patches from upright."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    prob = cross_val_predict(
        model, feats, turned, groups=groups, cv=GroupKFold(4), method="predict_proba"
    )[:, 1]
    return float(roc_auc_score(turned, prob))


def main() -> None:
    root = Path(os.environ.get("RIMNET_ROOT", ".")) / "data"
    cache = load_cache(root / "cache" / "default")
    les = cache.lesions
    rim = (usable(les) & (les["label"] == 1)).to_numpy()
    size = int(cache.meta["params"]["patch_size"])
    print("modality  | turned about x | about y | about z   (AUC, upright vs turned rim+ patches)")
    for c, name in enumerate(cache.meta["modalities"]):
        rows = np.flatnonzero(rim)
        patches = np.stack([center_crop(np.asarray(cache.patches[r][c], np.float32)[None], size)[0]
                            for r in rows])  # fmt: skip
        feats = np.log(axis_roughness(patches) + 1e-8)
        aug = les["augmentation"].to_numpy()[rows]
        groups = les["patient_id"].to_numpy()[rows]
        aucs = []
        for axis in "xyz":
            keep = (aug == "none") | np.char.startswith(aug.astype(str), f"rot_{axis}")
            aucs.append(upright_vs_turned(feats[keep], aug[keep] != "none", groups[keep]))
        print(f"{name:9} | " + " | ".join(f"{a:.3f}" for a in aucs))


if __name__ == "__main__":
    main()
