"""Patient-grouped, site-stratified nested cross-validation splits (§2.6), written once to a file.

Outer: ``outer_folds`` folds built per site, grouped by patient (all lesions of a patient, with
every augmented copy, sit in one fold) and stratified: each fold gets its share of the site's rim+
lesions, rim- lesions and patients (counts, as §2.6 reports them). Inner: ``inner_folds`` folds
inside each outer training set, built the same way.

The file (like nnU-Net's ``splits_final.json``) is reused once written and may be edited by hand;
a loaded file is validated against the cache's patients.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from rimnet.errors import RimnetError
from rimnet.io import write_json

log = logging.getLogger(__name__)


class SplitError(RimnetError):
    """A splits file that does not match the cohort (unknown, missing or duplicated patients)."""


WEIGHTS = np.array(
    [4.0, 1.0, 1.0]
)  # balance of rim+ (the rare class) matters most, then rim- and patients


def _imbalance(folds: np.ndarray, target: np.ndarray) -> float:
    return float((WEIGHTS * ((folds - target) / target) ** 2).sum())


def _assign(
    patients: pd.DataFrame, lesions: pd.DataFrame, n_folds: int, seed: int
) -> dict[str, int]:
    """Fold of every patient, per site, balancing rim+ lesions, rim- lesions and patients per fold.

    Greedy bin balancing (patients by decreasing rim+ count, random tie-breaks from ``seed``,
    each to
    the fold it unbalances least), then local search: single moves and pairwise swaps of patients
    between folds while they reduce the weighted squared deviation from the per-fold targets.
    """
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    for site in sorted(patients["site"].unique()):
        pids = patients.loc[patients["site"] == site, "patient_id"].astype(str).to_numpy()
        les = lesions[lesions["patient_id"].isin(pids)]
        pos = (
            les[les["label"] == 1]
            .groupby("patient_id")
            .size()
            .reindex(pids, fill_value=0)
            .to_numpy(float)
        )
        neg = (
            les[les["label"] == 0]
            .groupby("patient_id")
            .size()
            .reindex(pids, fill_value=0)
            .to_numpy(float)
        )
        load = np.stack([pos, neg, np.ones(len(pids))], axis=1)
        target = np.maximum(load.sum(0) / n_folds, 1e-9)
        folds = np.zeros((n_folds, 3))
        assign = np.empty(len(pids), int)
        for i in np.lexsort((rng.random(len(pids)), -neg, -pos)):
            costs = [
                _imbalance(folds + np.eye(n_folds)[k][:, None] * load[i], target)
                for k in range(n_folds)
            ]
            k = int(np.argmin(np.array(costs) + 1e-12 * rng.random(n_folds)))
            folds[k] += load[i]
            assign[i] = k
        improved = True
        while improved:
            improved = False
            current = _imbalance(folds, target)
            for i in rng.permutation(len(pids)):
                for k in range(n_folds):  # move i to fold k
                    if k == assign[i]:
                        continue
                    trial = folds.copy()
                    trial[assign[i]] -= load[i]
                    trial[k] += load[i]
                    if _imbalance(trial, target) < current - 1e-12:
                        folds, assign[i], current, improved = (
                            trial,
                            k,
                            _imbalance(trial, target),
                            True,
                        )
                for j in range(len(pids)):  # swap i and j
                    a, b = assign[i], assign[j]
                    if a == b:
                        continue
                    trial = folds.copy()
                    trial[a] += load[j] - load[i]
                    trial[b] += load[i] - load[j]
                    if _imbalance(trial, target) < current - 1e-12:
                        folds, current, improved = trial, _imbalance(trial, target), True
                        assign[i], assign[j] = b, a
        fold_of.update({pid: int(k) for pid, k in zip(pids, assign)})
    return fold_of


def make_splits(
    patients: pd.DataFrame,
    lesions: pd.DataFrame,
    outer_folds: int = 4,
    inner_folds: int = 3,
    seed: int = 0,
) -> dict:
    """Nested splits as a JSON-able dict: ``{"outer": [{"train": [...], "test": [...]}, ...],
    "inner": [[{"train": [...], "val": [...]}, ...] per outer fold], ...}``."""
    originals = lesions[
        (lesions["augmentation"] == "none") & (lesions["excluded"] == "") & (lesions["label"] >= 0)
    ]
    outer = _assign(patients, originals, outer_folds, seed)
    splits = {
        "outer_folds": outer_folds,
        "inner_folds": inner_folds,
        "seed": seed,
        "outer": [],
        "inner": [],
    }
    for k in range(outer_folds):
        test = sorted(p for p, f in outer.items() if f == k)
        train = sorted(p for p, f in outer.items() if f != k)
        splits["outer"].append({"train": train, "test": test})
        sub = patients[patients["patient_id"].isin(train)]
        inner = _assign(
            sub, originals[originals["patient_id"].isin(train)], inner_folds, seed + 1 + k
        )
        splits["inner"].append(
            [
                {
                    "train": sorted(p for p, f in inner.items() if f != j),
                    "val": sorted(p for p, f in inner.items() if f == j),
                }
                for j in range(inner_folds)
            ]
        )
    return splits


def _folds(splits: dict, key: str, source: str) -> list:
    folds = splits.get(key)
    if not isinstance(folds, list) or not folds:
        raise SplitError(f"{source}: no '{key}' folds (a list of folds is required)")
    return folds


def _check_ids(fold: dict, keys: tuple[str, str], where: str, source: str) -> None:
    """The id lists of one fold must be lists of patient ids written as strings."""
    for key in keys:
        ids = fold[key]
        bad = [] if isinstance(ids, list) else [ids]
        bad += [pid for pid in (ids if isinstance(ids, list) else []) if not isinstance(pid, str)]
        if bad:
            raise SplitError(
                f"{source}: {where} '{key}' must be a list of patient ids as strings (in quotes), "
                f"not {json.dumps(bad[:3], default=str)}"
            )


def _check_inner(inner_folds: list, k: int, train: set[str], source: str) -> None:
    """Inner folds of outer fold ``k``: every outer-training patient validates in exactly one."""
    seen: dict[str, int] = {}
    for j, inner in enumerate(inner_folds):
        if not isinstance(inner, dict) or not {"train", "val"} <= set(inner):
            raise SplitError(f"{source}: inner fold {k}.{j} needs 'train' and 'val' lists")
        _check_ids(inner, ("train", "val"), f"inner fold {k}.{j}", source)
        if not inner["val"]:
            raise SplitError(f"{source}: inner fold {k}.{j} has an empty validation set")
        extra = sorted((set(inner["train"]) | set(inner["val"])) - train)
        dup = sorted(set(inner["train"]) & set(inner["val"]))
        if extra or dup:
            raise SplitError(
                f"{source}: inner fold {k}.{j} uses patient(s) {(extra or dup)[:5]} "
                f"outside outer fold {k}'s training set or twice"
            )
        for pid in inner["val"]:
            if pid in seen:
                raise SplitError(
                    f"{source}: patient {pid!r} validates in inner folds {k}.{seen[pid]} and "
                    f"{k}.{j}"
                )
            seen[pid] = j
        left_out = sorted(train - set(inner["train"]) - set(inner["val"]))
        if left_out:
            raise SplitError(
                f"{source}: inner fold {k}.{j} leaves out outer-training patient(s) {left_out[:5]}"
            )
    missing = sorted(train - set(seen))
    if missing:
        raise SplitError(
            f"{source}: outer-training patient(s) {missing[:5]} of fold {k} validate in no inner "
            f"fold"
        )


def validate_splits(splits: dict, patient_ids: list[str], source: str = "splits") -> None:
    """Check a splits file completely: every patient in exactly one outer test fold, no empty fold,
    train and test never mixed, and inner folds that partition each outer training set."""
    known = set(patient_ids)
    if not isinstance(splits, dict):
        raise SplitError(f"{source}: not a splits object (expected keys 'outer' and 'inner')")
    outer, inner = _folds(splits, "outer", source), _folds(splits, "inner", source)
    if len(inner) != len(outer):
        raise SplitError(f"{source}: {len(outer)} outer folds but inner folds for {len(inner)}")
    seen: dict[str, int] = {}
    for k, fold in enumerate(outer):
        if not isinstance(fold, dict) or not {"train", "test"} <= set(fold):
            raise SplitError(f"{source}: outer fold {k} needs 'train' and 'test' lists")
        _check_ids(fold, ("train", "test"), f"outer fold {k}", source)
        if not fold["test"] or not fold["train"]:
            raise SplitError(
                f"{source}: outer fold {k} has an empty "
                f"{'test' if not fold['test'] else 'training'} set"
            )
        for pid in fold["test"]:
            if pid not in known:
                raise SplitError(f"{source}: outer fold {k} lists unknown patient {pid!r}")
            if pid in seen:
                raise SplitError(
                    f"{source}: patient {pid!r} is in the test set of outer folds {seen[pid]} and "
                    f"{k}"
                )
            seen[pid] = k
        unknown = sorted(set(fold["train"]) - known)
        if unknown:
            raise SplitError(f"{source}: outer fold {k} trains on unknown patient(s) {unknown[:5]}")
        both = sorted(set(fold["train"]) & set(fold["test"]))
        if both:
            raise SplitError(
                f"{source}: outer fold {k} has patient(s) {both[:5]} in both train and test"
            )
        if not isinstance(inner[k], list) or not inner[k]:
            raise SplitError(f"{source}: outer fold {k} has no inner folds")
        _check_inner(inner[k], k, set(fold["train"]), source)
    missing = sorted(known - set(seen))
    if missing:
        raise SplitError(f"{source}: patient(s) {missing[:5]} are in no outer test fold")


def read_splits(path: Path) -> dict:
    """A splits file's JSON (a clear :class:`SplitError` if it is not valid JSON)."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SplitError(f"splits file {path} is not valid JSON ({exc})") from exc


def check_splits_file(path: str | Path, outer_folds: int, inner_folds: int) -> None:
    """What can be checked of an existing splits file before any data is prepared: its JSON, the
    types of its id lists and its fold counts against the config's."""
    path = Path(path)
    if not path.exists():
        return
    splits = read_splits(path)
    if not isinstance(splits, dict):
        raise SplitError(f"{path}: not a splits object (expected keys 'outer' and 'inner')")
    outer, inner = _folds(splits, "outer", str(path)), _folds(splits, "inner", str(path))
    for k, fold in enumerate(outer):
        if not isinstance(fold, dict) or not {"train", "test"} <= set(fold):
            raise SplitError(f"{path}: outer fold {k} needs 'train' and 'test' lists")
        _check_ids(fold, ("train", "test"), f"outer fold {k}", str(path))
        if not fold["test"] or not fold["train"]:
            raise SplitError(
                f"{path}: outer fold {k} has an empty "
                f"{'test' if not fold['test'] else 'training'} set"
            )
    for k, folds in enumerate(inner):
        for j, fold in enumerate(folds if isinstance(folds, list) else []):
            if isinstance(fold, dict) and {"train", "val"} <= set(fold):
                _check_ids(fold, ("train", "val"), f"inner fold {k}.{j}", str(path))
    found = (len(outer), len(inner[0]) if isinstance(inner[0], list) else 0)
    if found[0] != outer_folds or (found[1] and found[1] != inner_folds):
        raise SplitError(
            f"splits file {path} has {found[0]} outer x {found[1]} inner folds, but the config "
            f"asks for data.outer_folds={outer_folds}, data.inner_folds={inner_folds}; set those "
            "to the file's, or give data.splits_file=<a new path> to write new splits"
        )


def load_or_make_splits(
    path: str | Path,
    patients: pd.DataFrame,
    lesions: pd.DataFrame,
    outer_folds: int = 4,
    inner_folds: int = 3,
    seed: int = 0,
) -> dict:
    """Read the splits file if it exists (validated), else make it, write it and print its
    statistics."""
    path = Path(path)
    ids = patients["patient_id"].astype(str).tolist()
    if path.exists():
        check_splits_file(path, outer_folds, inner_folds)
        splits = read_splits(path)
        validate_splits(splits, ids, str(path))
        return splits
    splits = make_splits(patients, lesions, outer_folds, inner_folds, seed)
    validate_splits(splits, ids, str(path))
    stats = fold_statistics(splits, patients, lesions)
    splits["statistics"] = stats.to_dict(orient="records")
    write_json(path, splits)
    log.info(f"splits written to {path}\n{stats.to_string(index=False)}")
    return splits


def fold_statistics(splits: dict, patients: pd.DataFrame, lesions: pd.DataFrame) -> pd.DataFrame:
    """Rim+ and rim- (original, usable) lesions and patients per outer test fold and site (as in
    §2.6)."""
    originals = lesions[
        (lesions["augmentation"] == "none") & (lesions["excluded"] == "") & (lesions["label"] >= 0)
    ]
    rows = []
    for k, fold in enumerate(splits["outer"]):
        for site in sorted(patients["site"].unique()):
            pids = set(patients.loc[patients["site"] == site, "patient_id"]) & set(fold["test"])
            les = originals[originals["patient_id"].isin(pids)]
            rows.append(
                {
                    "fold": k,
                    "site": site,
                    "patients": len(pids),
                    "rim+": int((les["label"] == 1).sum()),
                    "rim-": int((les["label"] == 0).sum()),
                }
            )
    return pd.DataFrame(rows)
