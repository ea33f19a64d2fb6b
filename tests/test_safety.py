"""Safety through the real entry points: a folder of one kind is never replaced by another stage, no
folder holding the command's inputs is replaced, no file rimnet did not write is deleted, no
delete follows a link, and every failure is one ``error:`` line with exit 2.

Unlike ``test_bad_inputs.py``, the user's tree is hashed whole here, the folders rimnet wrote
included: a synthetic cohort, a cache or a run folder is the user's data once written.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_cohort
from test_bad_inputs import (
    World,
    _bundle_variant,
    _mask,
    _pre,
    _predict,
    _run_folder,
    _splits,
    run_entry,
    small_patient,
    world,  # noqa: F401  (the fixture)
)

from rimnet.io import lock_for, mark_owned

TRAIN = ["logger=csv", "data.preprocess.elastic_copies=0"]


def full_hash(root: Path) -> dict[str, str]:
    """Every entry under ``root``, links as their target, files by content; only the empty
    hidden lock files that guard rimnet's folders are left out."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if name.startswith(".") and name.endswith(".lock") and not path.stat().st_size:
                continue
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def as_synthetic_cohort(w: World) -> Path:
    """Mark the world's cohort folder as ``rimnet synth`` marks the cohorts it writes."""
    folder = w.root / "cohort"
    mark_owned(folder, "synthetic-cohort")
    for pid in ("p1", "p2"):
        mark_owned(folder / pid, "synthetic-patient")
    return folder


def built_cache(w: World) -> Path:
    cache = w.root / "cache"
    assert run_entry("preprocess", _pre(w, cache)) == 0
    return cache


def predicted(w: World) -> Path:
    assert run_entry("predict", _predict(w, "--id", "p1")) == 0
    return w.root / "results"


def job_with_a_link(w: World) -> list[str]:
    """A nested job folder whose inner9 is a link to the user's own models folder."""
    models = w.root / "models" / "checkpoints"
    models.mkdir(parents=True)
    (models / "important.ckpt").write_bytes(b"weights of the user")
    job = w.root / "sweep" / "phase" / "fold0"
    job.mkdir(parents=True)
    mark_owned(job, "training-run")
    (job / "job.json").write_text(json.dumps({"fingerprint": "other", "status": "done"}))
    os.symlink(w.root / "models", job / "inner9")
    return [
        "-m",
        "experiment=phase",
        "fold=0",
        "force=true",
        f"hydra.sweep.dir={w.root / 'sweep'}",
        "data=cohort",
        f"data.cohort={w.csv}",
        "data.outer_folds=2",
        "data.inner_folds=1",
        *TRAIN,
    ]


def sweep_with(w: World, predictions: bytes | None, config: str | None = None) -> list[str]:
    """A sweep folder whose phase job holds ``predictions`` (and ``config``) as files."""
    fold = w.root / "sweep" / "phase" / "fold0"
    fold.mkdir(parents=True)
    if predictions is not None:
        (fold / "predictions.csv").write_bytes(predictions)
    if config is not None:
        (fold / "resolved_config.yaml").write_text(config)
    return [f"sweep_dir={w.root / 'sweep'}", "n_folds=1"]


def predictions_csv(**columns: list) -> bytes:
    base = {"lesion_id": ["p1_1", "p2_1"], "patient_id": ["p1", "p2"], "label": [0, 1]}
    base.update({"prob": [0.2, 0.9]} | columns)
    return (
        pd.DataFrame({k: v for k, v in base.items() if v is not None}).to_csv(index=False).encode()
    )


def zip_bomb(path: Path) -> None:
    """A zip archive whose one member declares 256 MiB of zeros in a few hundred KiB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("data.pkl", "w") as fh:
        chunk = bytes(2**20)
        for _ in range(256):
            fh.write(chunk)


def fail_with(errno_code: int, target: str) -> Callable[..., None]:
    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(errno_code, os.strerror(errno_code), target)

    return boom


def hold_lock_elsewhere(path: Path) -> subprocess.Popen:
    """Another process that holds the lock of ``path`` until it is killed."""
    code = (
        "import sys, time\nfrom filelock import FileLock\n"
        f"lock = FileLock({str(lock_for(path))!r})\nlock.acquire()\n"
        "print('held', flush=True)\ntime.sleep(120)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _cohort_of(w: World, pid: str, **changes: np.ndarray) -> Path:
    patients = {pid: {**small_patient(0), **changes}}
    return write_cohort(w.root / "other", patients)


# Each case: (stage, prepare(world, monkeypatch) -> argv, words the error must contain).
Case = tuple[str, Callable[[World, pytest.MonkeyPatch], list[str]], list[str]]
DATA_LOSS: dict[str, Case] = {
    "preprocess into the synthetic cohort it reads": (
        "preprocess",
        lambda w, mp: _pre(w, as_synthetic_cohort(w)),
        ["cohort", "a synthetic cohort", "rimnet synth"],
    ),
    "preprocess into a training run folder": (
        "preprocess",
        lambda w, mp: (
            mark_owned(_run_folder(w, payload=False), "training-run"),
            _pre(w, w.root / "run"),
        )[1],
        ["run", "training run"],
    ),
    "predict into the cohort folder it reads": (
        "predict",
        lambda w, mp: (
            as_synthetic_cohort(w),
            ["--bundle", str(w.bundle), "--cohort", str(w.csv), "--out", str(w.root / "cohort")],
        )[1],
        ["cohort", "input"],
    ),
    "a user's file inside a cache rebuilt with force": (
        "preprocess",
        lambda w, mp: (
            (built_cache(w) / "my_notes.txt").write_text("mine"),
            _pre(w, None, "force=true"),
        )[1],
        ["my_notes.txt", "did not write"],
    ),
    "a user's file inside a patient's predictions": (
        "predict",
        lambda w, mp: (
            (predicted(w) / "p1" / "my_notes.txt").write_text("mine"),
            _predict(w, "--id", "p1"),
        )[1],
        ["my_notes.txt", "did not write"],
    ),
    "a user file named like a temporary file": (
        "preprocess",
        lambda w, mp: (
            (w.root / "drafts").mkdir(),
            (w.root / "drafts" / ".notes.draft-2.v1.tmp").write_text("draft"),
            _pre(w, w.root / "drafts"),
        )[2],
        [".notes.draft-2.v1.tmp", "not written by rimnet"],
    ),
    "a nested job folder with a link to the user's models": (
        "train",
        lambda w, mp: job_with_a_link(w),
        ["inner9", "symbolic link"],
    ),
    "synth over a patch cache": (
        "synth",
        lambda w, mp: [f"out={built_cache(w)}", "scale=smoke", "progress=false"],
        ["cache", "a patch cache", "rimnet preprocess"],
    ),
    "predict into a patch cache": (
        "predict",
        lambda w, mp: _predict(w, "--id", "p1", out=built_cache(w)),
        ["cache", "a patch cache"],
    ),
    "prepare into the BIDS folder it reads": (
        "prepare",
        lambda w, mp: (
            (w.root / "bids" / "sub-01" / "anat").mkdir(parents=True),
            [f"bids={w.root / 'bids'}", f"out={w.root / 'bids'}", "site=basel"],
        )[1],
        ["bids"],
    ),
}
FAILURES: dict[str, Case] = {
    "disk full while writing the cache": (
        "preprocess",
        lambda w, mp: (
            mp.setattr("rimnet.data.cache._write_patches", fail_with(errno.ENOSPC, "patches.bin")),
            _pre(w),
        )[1],
        ["No space left on device", "patches.bin"],
    ),
    "disk full while writing predictions": (
        "predict",
        lambda w, mp: (
            mp.setattr(
                "rimnet.inference.predictor.write_json", fail_with(errno.ENOSPC, "summary.json")
            ),
            _predict(w, "--id", "p1"),
        )[1],
        ["No space left on device", "summary.json"],
    ),
    "read-only --out": (
        "predict",
        lambda w, mp: (
            mp.setattr("rimnet.io.mark_owned", fail_with(errno.EROFS, str(w.root / "results"))),
            _predict(w, "--id", "p1"),
        )[1],
        ["Read-only file system", "results"],
    ),
    "300-character patient id (predict)": (
        "predict",
        lambda w, mp: _predict(w, "--id", "p" * 300),
        ["patient id", "300 bytes"],
    ),
    "300-character patient id (preprocess)": (
        "preprocess",
        lambda w, mp: (w.rewrite_csv(a=lambda d: d.assign(patient_id=["p1", "q" * 300])), _pre(w))[
            1
        ],
        ["patient id", "300 bytes"],
    ),
    "predictions.csv of binary garbage": (
        "evaluate",
        lambda w, mp: sweep_with(w, bytes(range(256)) * 4),
        ["predictions.csv"],
    ),
    "predictions.csv without prob": (
        "evaluate",
        lambda w, mp: sweep_with(w, predictions_csv(prob=None)),
        ["predictions.csv", "no column prob"],
    ),
    "predictions.csv with NaN probabilities": (
        "evaluate",
        lambda w, mp: sweep_with(w, predictions_csv(prob=[float("nan"), 0.5])),
        ["predictions.csv", "prob not in [0, 1]"],
    ),
    "predictions.csv with label 2": (
        "evaluate",
        lambda w, mp: sweep_with(w, predictions_csv(label=[0, 2])),
        ["predictions.csv", "label not 0 or 1"],
    ),
    "empty predictions.csv": (
        "evaluate",
        lambda w, mp: sweep_with(w, b""),
        ["predictions.csv", "cannot be read"],
    ),
    "n_folds=abc": (
        "evaluate",
        lambda w, mp: [*sweep_with(w, predictions_csv())[:1], "n_folds=abc"],
        ["n_folds='abc'", "integer"],
    ),
    "a python tag in resolved_config.yaml": (
        "evaluate",
        lambda w, mp: sweep_with(
            w, predictions_csv(), f"!!python/object/apply:os.system ['touch {w.root}/PWNED']\n"
        ),
        ["resolved_config.yaml", "not a plain YAML"],
    ),
    "truncated meta.json": (
        "preprocess",
        lambda w, mp: (
            (built_cache(w) / "meta.json").write_text('{"fingerprint": "ab'),
            _pre(w),
        )[1],
        ["cache", "meta.json", "force=true"],
    ),
    "truncated patches.bin": (
        "preprocess",
        lambda w, mp: (
            os.truncate(built_cache(w) / "patches.bin", 100),
            _pre(w),
        )[1],
        ["cache", "patches.bin", "force=true"],
    ),
    "bundle whose widths do not fit its weights": (
        "predict",
        lambda w, mp: _bundle_variant(
            w, "wide.pt", lambda b: {**b, "model": {**b["model"], "widths": [4, 4, 4]}}
        ),
        ["wide.pt", "do not fit"],
    ),
    "bundle threshold is a string": (
        "predict",
        lambda w, mp: _bundle_variant(w, "s.pt", lambda b: {**b, "threshold": "high"}),
        ["s.pt", "threshold 'high'"],
    ),
    "bundle threshold is NaN": (
        "predict",
        lambda w, mp: _bundle_variant(w, "nan.pt", lambda b: {**b, "threshold": math.nan}),
        ["nan.pt", "threshold nan"],
    ),
    "bundle patch size negative": (
        "predict",
        lambda w, mp: _bundle_variant(
            w, "neg.pt", lambda b: {**b, "patch": {**b["patch"], "patch_size": -28}}
        ),
        ["neg.pt", "patch size -28"],
    ),
    "ckpt_path of another width": (
        "train",
        lambda w, mp: [
            f"ckpt_path={_run_folder(w, payload=False) / 'checkpoints' / 'best-epoch000.ckpt'}",
            *TRAIN,
        ],
        ["ckpt_path", "another network"],
    ),
    "ckpt_path is a text file": (
        "train",
        lambda w, mp: [f"ckpt_path={w.root / 'mine' / 'notes.txt'}", *TRAIN],
        ["notes.txt", "not a PyTorch file"],
    ),
    "trainer.precision=abc": (
        "train",
        lambda w, mp: ["trainer.precision=abc", *TRAIN],
        ["trainer.precision='abc'"],
    ),
    "data.loader.num_workers=-1": (
        "train",
        lambda w, mp: ["data.loader.num_workers=-1", *TRAIN],
        ["data.loader.num_workers=-1", ">= 0"],
    ),
    "data.loader.modality_dropout=1": (
        "train",
        lambda w, mp: ["data.loader.modality_dropout=1", *TRAIN],
        ["data.loader.modality_dropout=1", "[0, 1)"],
    ),
    "model.net.fusion=middle": (
        "train",
        lambda w, mp: ["model.net.fusion=middle", *TRAIN],
        ["fusion", "early+late", "'middle'"],
    ),
    "splits with numeric ids": (
        "train",
        lambda w, mp: _splits(
            w,
            {
                "outer": [{"train": [1], "test": [2]}, {"train": [2], "test": [1]}],
                "inner": [[{"train": [], "val": [1]}], [{"train": [], "val": [2]}]],
            },
        ),
        ["splits_final.json", "as strings"],
    ),
    "splits with object ids": (
        "train",
        lambda w, mp: _splits(
            w,
            {
                "outer": [{"train": [{"id": "p1"}], "test": ["p2"]}, {"train": [], "test": []}],
                "inner": [[], []],
            },
        ),
        ["splits_final.json", "as strings"],
    ),
    "splits file of other fold counts": (
        "train",
        lambda w, mp: [
            *_splits(
                w,
                {
                    "outer": [{"train": ["p1"], "test": ["p2"]}, {"train": ["p2"], "test": ["p1"]}],
                    "inner": [[{"train": [], "val": ["p1"]}], [{"train": [], "val": ["p2"]}]],
                },
            ),
            "data.outer_folds=100",
        ],
        ["splits_final.json", "2 outer", "data.outer_folds=100", "data.splits_file"],
    ),
    "data.batch_size (not a setting)": (
        "train",
        lambda w, mp: ["data.batch_size=-1", *TRAIN],
        ["data.batch_size", "data.loader.batch_size"],
    ),
    "lesion label 2**31 (preprocess)": (
        "preprocess",
        lambda w, mp: (w.save("p1", "lesion_mask", _mask(2.0**31, dtype=np.float64)), _pre(w))[1],
        ["patient p1", "lesion_mask file", "2147483648"],
    ),
    "rim label 2**32 (preprocess)": (
        "preprocess",
        lambda w, mp: (w.save("p2", "rim_mask", _mask(2.0**32, dtype=np.float64)), _pre(w))[1],
        ["patient p2", "rim_mask file", "4294967296"],
    ),
    "lesion label 2**31 (predict)": (
        "predict",
        lambda w, mp: (
            w.save("p1", "lesion_mask", _mask(2.0**31, dtype=np.float64)),
            _predict(w, "--id", "p1"),
        )[1],
        ["lesion_mask file", "2147483648"],
    ),
    "a zip bomb as bundle": (
        "predict",
        lambda w, mp: (zip_bomb(w.root / "bomb.pt"), _predict(w, bundle=w.root / "bomb.pt"))[1],
        ["bomb.pt", "declares 256 MiB"],
    ),
    "hydra.run.dir is a user folder": (
        "train",
        lambda w, mp: [f"hydra.run.dir={w.root / 'mine'}", *TRAIN],
        ["mine", "not written by rimnet"],
    ),
    "hydra.run.dir=/": (
        "train",
        lambda w, mp: ["hydra.run.dir=/", *TRAIN],
        ["/", "not written by rimnet"],
    ),
    "hydra.sweep.dir is a user folder": (
        "train",
        lambda w, mp: ["-m", f"hydra.sweep.dir={w.root / 'mine'}", *TRAIN],
        ["mine", "notes.txt"],
    ),
    "BIDS subject sub-..": (
        "prepare",
        lambda w, mp: (
            (w.root / "bids" / "sub-.." / "anat").mkdir(parents=True),
            [f"bids={w.root / 'bids'}", f"out={w.root / 'prepared'}", "site=basel"],
        )[1],
        ["sub-..", "BIDS label"],
    ),
    "participants.tsv without participant_id": (
        "prepare",
        lambda w, mp: (
            (w.root / "bids" / "sub-01" / "anat").mkdir(parents=True),
            (w.root / "bids" / "participants.tsv").write_text("subject\tsite\n01\tbasel\n"),
            [f"bids={w.root / 'bids'}", f"out={w.root / 'prepared'}"],
        )[2],
        ["participants.tsv", "participant_id"],
    ),
}
FAILURES["trainer.devices=abc"] = (
    "train",
    lambda w, mp: ["trainer.devices=abc", *TRAIN],
    ["trainer", "devices"],
)
if not torch.cuda.is_available():
    FAILURES["trainer.accelerator=gpu without a GPU"] = (
        "train",
        lambda w, mp: ["trainer.accelerator=gpu", *TRAIN],
        ["trainer.accelerator=gpu", "no CUDA GPU"],
    )


def _run_case(case: Case, world: World, monkeypatch, capsys) -> None:
    stage, prepare, words = case
    argv = prepare(world, monkeypatch)
    capsys.readouterr()
    before = full_hash(world.root)
    code = run_entry(stage, argv)
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}\n{err[-3000:]}"
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, f"not one 'error:' line in\n{err[-3000:]}"
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]}"
    assert "Traceback" not in err
    after = full_hash(world.root)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"the user's tree changed: {changed[:10]}"
    assert not (world.root / "PWNED").exists(), "a payload ran"


@pytest.mark.parametrize("name", list(DATA_LOSS))
def test_no_data_is_lost(name, world, monkeypatch, capsys):
    _run_case(DATA_LOSS[name], world, monkeypatch, capsys)


@pytest.mark.parametrize("name", list(FAILURES))
def test_every_failure_is_one_error_line(name, world, monkeypatch, capsys):
    _run_case(FAILURES[name], world, monkeypatch, capsys)


def test_a_second_train_into_a_busy_run_folder_is_refused(world, capsys):
    run = world.root / "run"
    other = hold_lock_elsewhere(run)
    try:
        before = full_hash(world.root)
        code = run_entry("train", [f"hydra.run.dir={run}", *TRAIN])
    finally:
        other.kill()
        other.wait()
    err = capsys.readouterr().err
    assert code == 2 and "in use by another rimnet" in err and "Traceback" not in err
    assert full_hash(world.root) == before


def test_only_temporary_files_proven_by_their_checksum_are_removed(tmp_path):
    from rimnet.io import _checksum, _host, remove_stale_temps

    dead, host, rand = "999999999", _host(), "abcd1234"
    stale = f".cache.rimnet-{host}-{dead}-{rand}-{_checksum('cache', host, dead, rand)}.tmp"
    forged = f".cache.rimnet-{host}-{dead}-{rand}-0123456789ab.tmp"
    for name in (stale, forged, ".cache.draft-2.v1.tmp"):
        (tmp_path / name).write_text("x")
    assert remove_stale_temps(tmp_path / "cache") == [tmp_path / stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([forged, ".cache.draft-2.v1.tmp"])


def test_safe_glob_never_enters_a_link(tmp_path):
    from rimnet.io import safe_glob

    (tmp_path / "job" / "inner0" / "checkpoints").mkdir(parents=True)
    (tmp_path / "job" / "inner0" / "checkpoints" / "last.ckpt").write_text("ours")
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "important.ckpt").write_text("theirs")
    os.symlink(tmp_path / "models", tmp_path / "job" / "inner9")
    os.symlink(tmp_path / "models" / "checkpoints" / "important.ckpt", tmp_path / "job" / "x.ckpt")
    found = safe_glob(tmp_path / "job", "*/checkpoints/*.ckpt") + safe_glob(
        tmp_path / "job", "*.ckpt"
    )
    assert found == [tmp_path / "job" / "inner0" / "checkpoints" / "last.ckpt"]


def test_folders_and_files_follow_the_umask(tmp_path):
    from rimnet.io import atomic_dir, atomic_path, claim_folder

    old = os.umask(0o022)
    try:
        out = claim_folder(tmp_path / "pred", "predictions")
        with atomic_dir(out / "p1", "patient-predictions") as tmp:
            (tmp / "lesions.csv").write_text("x")
        with atomic_path(out / "patients.csv") as tmp:
            tmp.write_text("y")
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (out, out / "p1", out / "patients.csv")}
    assert modes == {"pred": 0o755, "p1": 0o755, "patients.csv": 0o644}
