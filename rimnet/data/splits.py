"""Patient-grouped, site-stratified nested cross-validation splits (§2.6), written once to a file.

Outer: ``outer_folds`` folds built per site with scikit-learn's ``StratifiedGroupKFold`` over the
site's original, usable lesions (class = rim+/rim-, group = patient), so every fold gets its share
of each site's rim+ and rim- lesions and all lesions of a patient, with every augmented copy, sit in
one fold. Patients without usable lesions are dealt round-robin to the folds with fewest patients.
Inner: ``inner_folds`` folds inside each outer training set, built the same way.

The file (like nnU-Net's ``splits_final.json``) is reused once written and may be edited by hand;
a loaded file is validated against the cache's patients.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from rimnet.io import write_json


class SplitError(ValueError):
    """A splits file that does not match the cohort (unknown, missing or duplicated patients)."""


def _assign(patients: pd.DataFrame, lesions: pd.DataFrame, n_folds: int, seed: int) -> dict[str, int]:
    """Fold of every patient in ``patients``, stratified per site by lesion class, grouped by patient."""
    fold_of: dict[str, int] = {}
    for site in sorted(patients["site"].unique()):
        pids = patients.loc[patients["site"] == site, "patient_id"].tolist()
        les = lesions[lesions["patient_id"].isin(pids)]
        with_lesions = les["patient_id"].unique()
        if len(with_lesions) >= n_folds:
            sgkf = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
            groups = les["patient_id"].to_numpy()
            for k, (_, test) in enumerate(sgkf.split(np.zeros(len(les)), les["label"].to_numpy(), groups)):
                for pid in les["patient_id"].to_numpy()[test]:
                    fold_of[pid] = k
        rest = [p for p in pids if p not in fold_of]
        for pid in np.random.default_rng(seed).permutation(rest):
            counts = np.bincount(list(fold_of.values()), minlength=n_folds)
            fold_of[str(pid)] = int(np.argmin(counts))
    return fold_of


def make_splits(patients: pd.DataFrame, lesions: pd.DataFrame, outer_folds: int = 4, inner_folds: int = 3, seed: int = 0) -> dict:
    """Nested splits as a JSON-able dict: ``{"outer": [{"train": [...], "test": [...]}, ...],
    "inner": [[{"train": [...], "val": [...]}, ...] per outer fold], ...}``."""
    originals = lesions[(lesions["augmentation"] == "none") & (lesions["excluded"] == "") & (lesions["label"] >= 0)]
    outer = _assign(patients, originals, outer_folds, seed)
    splits = {"outer_folds": outer_folds, "inner_folds": inner_folds, "seed": seed, "outer": [], "inner": []}
    for k in range(outer_folds):
        test = sorted(p for p, f in outer.items() if f == k)
        train = sorted(p for p, f in outer.items() if f != k)
        splits["outer"].append({"train": train, "test": test})
        sub = patients[patients["patient_id"].isin(train)]
        inner = _assign(sub, originals[originals["patient_id"].isin(train)], inner_folds, seed + 1 + k)
        splits["inner"].append([{"train": sorted(p for p, f in inner.items() if f != j),
                                 "val": sorted(p for p, f in inner.items() if f == j)} for j in range(inner_folds)])
    return splits


def validate_splits(splits: dict, patient_ids: list[str], source: str = "splits") -> None:
    """Check that every patient is in exactly one outer test fold and that train/test never mix."""
    known = set(patient_ids)
    seen: dict[str, int] = {}
    for k, fold in enumerate(splits.get("outer", [])):
        for pid in fold["test"]:
            if pid not in known:
                raise SplitError(f"{source}: outer fold {k} lists unknown patient {pid!r}")
            if pid in seen:
                raise SplitError(f"{source}: patient {pid!r} is in the test set of outer folds {seen[pid]} and {k}")
            seen[pid] = k
        unknown = sorted(set(fold["train"]) - known)
        if unknown:
            raise SplitError(f"{source}: outer fold {k} trains on unknown patient(s) {unknown[:5]}")
        both = sorted(set(fold["train"]) & set(fold["test"]))
        if both:
            raise SplitError(f"{source}: outer fold {k} has patient(s) {both[:5]} in both train and test")
        for j, inner in enumerate(splits["inner"][k] if k < len(splits.get("inner", [])) else []):
            extra = sorted((set(inner["train"]) | set(inner["val"])) - set(fold["train"]))
            dup = sorted(set(inner["train"]) & set(inner["val"]))
            if extra or dup:
                raise SplitError(f"{source}: inner fold {k}.{j} uses patient(s) {(extra or dup)[:5]} "
                                 f"outside outer fold {k}'s training set or twice")
    missing = sorted(known - set(seen))
    if missing:
        raise SplitError(f"{source}: patient(s) {missing[:5]} are in no outer test fold")


def load_or_make_splits(path: str | Path, patients: pd.DataFrame, lesions: pd.DataFrame, outer_folds: int = 4,
                        inner_folds: int = 3, seed: int = 0) -> dict:
    """Read the splits file if it exists (validated), else make it, write it and print its statistics."""
    path = Path(path)
    ids = patients["patient_id"].astype(str).tolist()
    if path.exists():
        splits = json.loads(path.read_text())
        validate_splits(splits, ids, str(path))
        return splits
    splits = make_splits(patients, lesions, outer_folds, inner_folds, seed)
    validate_splits(splits, ids, str(path))
    stats = fold_statistics(splits, patients, lesions)
    splits["statistics"] = stats.to_dict(orient="records")
    write_json(path, splits)
    print(f"splits written to {path}\n{stats.to_string(index=False)}")
    return splits


def fold_statistics(splits: dict, patients: pd.DataFrame, lesions: pd.DataFrame) -> pd.DataFrame:
    """Rim+ and rim- (original, usable) lesions and patients per outer test fold and site (as in §2.6)."""
    originals = lesions[(lesions["augmentation"] == "none") & (lesions["excluded"] == "") & (lesions["label"] >= 0)]
    rows = []
    for k, fold in enumerate(splits["outer"]):
        for site in sorted(patients["site"].unique()):
            pids = set(patients.loc[patients["site"] == site, "patient_id"]) & set(fold["test"])
            les = originals[originals["patient_id"].isin(pids)]
            rows.append({"fold": k, "site": site, "patients": len(pids), "rim+": int((les["label"] == 1).sum()),
                         "rim-": int((les["label"] == 0).sum())})
    return pd.DataFrame(rows)
