"""Bad inputs through the real entry points: exit code 2, a message naming what is wrong, and
nothing of the user's changed (the user's tree is hashed before and after every case)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from bundles import untrained_bundle
from conftest import simple_patient, write_cohort

from rimnet.io import OWNER_MARKER
from rimnet.models import RimNet

SHAPE = (32, 32, 32)
TINY = {"n_modalities": 2, "widths": [2, 4, 4], "fc": [8, 8, 8]}


def tree_hash(root: Path) -> dict[str, str]:
    """Content hash of every file under ``root`` outside the tool's marked folders and lock
    files."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) / d / OWNER_MARKER).is_file()]
        for name in filenames:
            if name.startswith(".") and name.endswith(".lock"):
                continue
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        for d in dirnames:
            out[str((Path(dirpath) / d).relative_to(root)) + "/"] = "dir"
    return out


@dataclass
class World:
    """A user's folder: a cohort of two patients, a folder of their own, and a model bundle."""

    root: Path
    csv: Path
    bundle: Path

    def patient_file(self, pid: str, column: str) -> Path:
        return self.root / "cohort" / pid / f"{column}.nii.gz"

    def rewrite_csv(self, **changes: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
        df = pd.read_csv(self.csv, dtype=str, keep_default_na=False)
        for fn in changes.values():
            df = fn(df)
        df.to_csv(self.csv, index=False)
        return self.csv

    def save(
        self, pid: str, column: str, arr: np.ndarray, affine: np.ndarray | None = None
    ) -> None:
        nib.save(
            nib.Nifti1Image(arr, np.eye(4) if affine is None else affine),
            self.patient_file(pid, column),
        )


def small_patient(seed: int) -> dict[str, np.ndarray]:
    p = simple_patient(shape=SHAPE, seed=seed)
    p["lesion_mask"] = np.zeros(SHAPE, np.uint8)
    p["rim_mask"] = np.zeros(SHAPE, np.int16)
    p["lesion_mask"][13:19, 13:19, 13:19] = 1
    p["rim_mask"][13:19, 13:19, 13:19] = 1
    return p


@pytest.fixture
def world(tmp_path, monkeypatch) -> World:
    root = tmp_path / "user"
    csv = write_cohort(root / "cohort", {"p1": small_patient(0), "p2": small_patient(1)})
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("my notes\n")
    torch.manual_seed(0)
    net = RimNet(**TINY)
    untrained_bundle([net], ["phase", "flair"]).save(root / "bundle.pt")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RIMNET_ROOT", str(tmp_path / "rimnet-root"))
    return World(root, csv, root / "bundle.pt")


def run_entry(stage: str, argv: list[str]) -> int:
    """Call a real entry point in-process, as its command line would; returns the exit code."""
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    if stage == "predict":
        from rimnet.predict import main

        return main(argv)
    if stage == "export":
        from rimnet.cli import main as cli

        return cli(["export", *argv])
    module = {
        "preprocess": "rimnet.preprocess",
        "synth": "rimnet.synth.__main__",
        "train": "rimnet.train",
        "evaluate": "rimnet.evaluate",
        "prepare": "rimnet.prepare.__main__",
    }[stage]
    main = __import__(module, fromlist=["main"]).main
    old = sys.argv
    sys.argv = [module, *argv]
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        sys.argv = old
        GlobalHydra.instance().clear()
    return 0


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def payload_file(path: Path, marker: Path, wrap: Callable[[object], object]) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save(wrap(Payload()), path)


# Each case: (stage, prepare(world) -> argv, words the error must contain).
def _pre(w: World, cache: str | Path | None = None, *extra: str) -> list[str]:
    return [
        f"cohort={w.csv}",
        f"cache_dir={cache or w.root / 'cache'}",
        "params.elastic_copies=0",
        "progress=false",
        *extra,
    ]


def _set(w: World, pid: str, column: str, arr: np.ndarray, affine=None) -> None:
    w.save(pid, column, arr, affine)


def _mask(
    value: float, where=(slice(13, 19),) * 3, dtype=np.float32, base: str = "lesion"
) -> np.ndarray:
    m = np.zeros(SHAPE, dtype)
    m[where] = value
    return m


def _cell(column: str, value: str, row: int = 1) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        df.loc[row, column] = value
        return df

    return fn


def _predict(
    w: World, *extra: str, bundle: Path | None = None, out: Path | None = None
) -> list[str]:
    d = w.root / "cohort" / "p1"
    return [
        "--bundle",
        str(bundle or w.bundle),
        "--phase",
        str(d / "phase.nii.gz"),
        "--flair",
        str(d / "flair.nii.gz"),
        "--lesion-mask",
        str(d / "lesion_mask.nii.gz"),
        "--out",
        str(out or w.root / "results"),
        "--device",
        "cpu",
        *extra,
    ]


def _cohort_predict(w: World, *extra: str) -> list[str]:
    return [
        "--bundle",
        str(w.bundle),
        "--cohort",
        str(w.csv),
        "--out",
        str(w.root / "results"),
        "--device",
        "cpu",
        *extra,
    ]


def _bundle_variant(w: World, name: str, change: Callable[[dict], dict]) -> list[str]:
    torch.save(change(torch.load(w.bundle, weights_only=True)), w.root / name)
    return _predict(w, bundle=w.root / name)


def _splits(w: World, splits: dict) -> list[str]:
    path = w.root / "cohort" / "splits_final.json"
    path.write_text(json.dumps(splits))
    return [
        "data=cohort",
        f"data.cohort={w.csv}",
        "data.preprocess.elastic_copies=0",
        "logger=csv",
        "data.outer_folds=2",
        "data.inner_folds=1",
    ]


def _run_folder(w: World, payload: bool) -> Path:
    run = w.root / "run"
    (run / "checkpoints").mkdir(parents=True)
    ckpt = run / "checkpoints" / "best-epoch000.ckpt"
    if payload:
        payload_file(ckpt, w.root / "PWNED", lambda p: {"state_dict": {"net.w": p}})
    else:
        description = {
            "model": TINY,
            "modalities": ["phase", "flair"],
            "patch": {"patch_size": 28, "context": 32},
            "rules": {},
        }
        torch.save(
            {
                "state_dict": {f"net.{k}": v for k, v in RimNet(**TINY).state_dict().items()},
                "rimnet": description,
            },
            ckpt,
        )
    return run


CASES: dict[str, tuple[str, Callable[[World], list[str]], list[str]]] = {
    # --- preprocess: folders that are not the tool's ---------------------------------------------
    "cache_dir is a user folder": (
        "preprocess",
        lambda w: _pre(w, w.root / "mine"),
        ["mine", "not written by rimnet"],
    ),
    "cache_dir is the cohort folder": (
        "preprocess",
        lambda w: _pre(w, w.root / "cohort"),
        ["cohort", "not written by rimnet"],
    ),
    "cache_dir is a file": (
        "preprocess",
        lambda w: _pre(w, w.root / "mine" / "notes.txt"),
        ["notes.txt", "is a file"],
    ),
    "cache_dir is a symlink": (
        "preprocess",
        lambda w: (os.symlink(w.root / "mine", w.root / "link"), _pre(w, w.root / "link"))[1],
        ["link", "symbolic link"],
    ),
    # --- preprocess: the cohort table
    # --------------------------------------------------------------
    "cohort file missing": (
        "preprocess",
        lambda w: (w.csv.unlink(), _pre(w))[1],
        ["cohort.csv", "does not exist"],
    ),
    "cohort file empty": (
        "preprocess",
        lambda w: (w.csv.write_text(""), _pre(w))[1],
        ["cohort.csv", "cannot be read"],
    ),
    "cohort header only": (
        "preprocess",
        lambda w: (w.csv.write_text(w.csv.read_text().splitlines()[0] + "\n"), _pre(w))[1],
        ["cohort.csv", "no patient"],
    ),
    "column missing": (
        "preprocess",
        lambda w: (w.rewrite_csv(a=lambda d: d.drop(columns=["flair"])), _pre(w))[1],
        ["missing column", "flair"],
    ),
    "duplicate ids": (
        "preprocess",
        lambda w: (w.rewrite_csv(a=_cell("patient_id", "p1")), _pre(w))[1],
        ["duplicate", "p1"],
    ),
    "empty lesion_mask cell": (
        "preprocess",
        lambda w: (w.rewrite_csv(a=_cell("lesion_mask", "")), _pre(w))[1],
        ["patient p2", "lesion_mask", "empty"],
    ),
    "empty phase cell": (
        "preprocess",
        lambda w: (w.rewrite_csv(a=_cell("phase", "")), _pre(w))[1],
        ["patient p2", "phase", "empty"],
    ),
    "unknown site": (
        "preprocess",
        lambda w: (w.rewrite_csv(a=_cell("site", "Basel")), _pre(w, None, "params.sites=[basel]"))[
            1
        ],
        ["patient p2", "unknown site 'Basel'"],
    ),
    # --- preprocess: patient ids that would become dangerous folder names ------------------------
    "patient id '..'": (
        "preprocess",
        lambda w: (w.rewrite_csv(a=_cell("patient_id", "..")), _pre(w))[1],
        ["'..'", "dot"],
    ),
    "patient id empty": (
        "preprocess",
        lambda w: (w.rewrite_csv(a=_cell("patient_id", "")), _pre(w))[1],
        ["patient id", "empty"],
    ),
    "patient id with slash": (
        "preprocess",
        lambda w: (w.rewrite_csv(a=_cell("patient_id", "a/b")), _pre(w))[1],
        ["'a/b'", "separator"],
    ),
    "patient id hidden": (
        "preprocess",
        lambda w: (w.rewrite_csv(a=_cell("patient_id", ".p2")), _pre(w))[1],
        ["'.p2'", "dot"],
    ),
    "patient id control char": (
        "preprocess",
        lambda w: (w.rewrite_csv(a=_cell("patient_id", "p\x072")), _pre(w))[1],
        ["control character"],
    ),
    # --- preprocess: image files
    # ---------------------------------------------------------------------
    "image file missing": (
        "preprocess",
        lambda w: (w.patient_file("p2", "flair").unlink(), _pre(w))[1],
        ["patient p2", "flair file", "does not exist"],
    ),
    "truncated nii.gz": (
        "preprocess",
        lambda w: (truncate(w.patient_file("p2", "phase")), _pre(w))[1],
        ["patient p2", "phase file", "phase.nii.gz"],
    ),
    "not a NIfTI": (
        "preprocess",
        lambda w: (w.patient_file("p1", "flair").write_bytes(gzip.compress(b"hello")), _pre(w))[1],
        ["patient p1", "flair file", "NIfTI"],
    ),
    "4-D image": (
        "preprocess",
        lambda w: (_set(w, "p1", "flair", np.zeros((*SHAPE, 2), np.float32)), _pre(w))[1],
        ["patient p1", "flair file", "4-D"],
    ),
    "NaN voxels": (
        "preprocess",
        lambda w: (_set(w, "p2", "phase", np.full(SHAPE, np.nan, np.float32)), _pre(w))[1],
        ["patient p2", "phase file", "NaN"],
    ),
    "shape mismatch": (
        "preprocess",
        lambda w: (_set(w, "p2", "flair", np.zeros((32, 32, 30), np.float32)), _pre(w))[1],
        ["patient p2", "flair file", "shape"],
    ),
    "affine mismatch": (
        "preprocess",
        lambda w: (
            _set(w, "p2", "flair", np.zeros(SHAPE, np.float32), np.diag([2.0, 1, 1, 1])),
            _pre(w),
        )[1],
        ["patient p2", "flair file", "affine"],
    ),
    # --- preprocess: masks that would lose labels silently
    # -------------------------------------------
    "fractional lesion mask": (
        "preprocess",
        lambda w: (_set(w, "p1", "lesion_mask", _mask(0.4)), _pre(w))[1],
        ["patient p1", "lesion_mask file", "non-integer", "0.4"],
    ),
    "half-valued lesion mask": (
        "preprocess",
        lambda w: (_set(w, "p2", "lesion_mask", _mask(0.5)), _pre(w))[1],
        ["patient p2", "lesion_mask file", "0.5"],
    ),
    "negative lesion labels": (
        "preprocess",
        lambda w: (_set(w, "p1", "lesion_mask", _mask(-1, dtype=np.int16)), _pre(w))[1],
        ["patient p1", "lesion_mask file", "negative", "-1"],
    ),
    "negative rim labels": (
        "preprocess",
        lambda w: (_set(w, "p2", "rim_mask", _mask(-2, dtype=np.int16)), _pre(w))[1],
        ["patient p2", "rim_mask file", "negative"],
    ),
    "fractional rim mask": (
        "preprocess",
        lambda w: (_set(w, "p2", "rim_mask", _mask(0.3)), _pre(w))[1],
        ["patient p2", "rim_mask file", "non-integer"],
    ),
    "rim outside every lesion": (
        "preprocess",
        lambda w: (_set(w, "p1", "rim_mask", _mask(1, (slice(2, 6),) * 3, np.int16)), _pre(w))[1],
        ["patient p1", "rim_mask file", "touch no lesion"],
    ),
    "rim outside, warned, all rim-": (
        "preprocess",
        lambda w: (
            _set(w, "p1", "rim_mask", _mask(1, (slice(2, 6),) * 3, np.int16)),
            _pre(w, None, "params.rim_outside_lesion=warn"),
        )[1],
        ["patient p1", "rim_mask file", "every lesion would be rim-"],
    ),
    "fractional rater mask": (
        "preprocess",
        lambda w: (
            _set(w, "p1", "rater1_mask", _mask(0.5)),
            w.rewrite_csv(a=lambda d: d.assign(rater1_mask=["p1/rater1_mask.nii.gz", ""])),
            _pre(w),
        )[2],
        ["patient p1", "rater1_mask file", "non-integer"],
    ),
    # --- synth
    # ---------------------------------------------------------------------------------------
    "synth without out=": ("synth", lambda w: ["progress=false"], ["out=", "required"]),
    "synth unknown scale": (
        "synth",
        lambda w: [f"out={w.root / 'synth'}", "scale=huge"],
        ["scale='huge'", "smoke"],
    ),
    "synth into a user folder": (
        "synth",
        lambda w: [f"out={w.root / 'mine'}", "progress=false"],
        ["mine", "not written by rimnet"],
    ),
    "synth into the cohort folder": (
        "synth",
        lambda w: [f"out={w.root / 'cohort'}", "progress=false"],
        ["cohort", "not written by rimnet"],
    ),
    # --- train
    # ---------------------------------------------------------------------------------------
    "fold out of range": ("train", lambda w: ["fold=7", "logger=csv"], ["fold=7", "0 to 3"]),
    "unknown experiment": (
        "train",
        lambda w: ["experiment=phase_flar", "logger=csv"],
        ["experiment=phase_flar is not a choice", "phase_flair"],
    ),
    "unknown engine in a sweep": (
        "train",
        lambda w: ["engine=sequential,fast", "logger=csv"],
        ["engine=fast is not a choice", "packed"],
    ),
    "unknown launcher": (
        "train",
        lambda w: ["hydra/launcher=ray", "logger=csv"],
        ["hydra/launcher=ray", "joblib"],
    ),
    "widths of the wrong length": (
        "train",
        lambda w: ["model.net.widths=[8,16]", "logger=csv"],
        ["model.net.widths=[8, 16]", "three"],
    ),
    "negative epochs": (
        "train",
        lambda w: ["trainer.max_epochs=-3", "logger=csv"],
        ["trainer.max_epochs=-3", ">= 1"],
    ),
    "unknown modality": (
        "train",
        lambda w: ["modalities=[phase,swi]", "logger=csv"],
        ["modalities=[phase, swi]", "swi is not among the cached channels"],
    ),
    "batch size 0": (
        "train",
        lambda w: ["data.loader.batch_size=0", "logger=csv"],
        ["data.loader.batch_size=0", ">= 1"],
    ),
    "negative learning rate": (
        "train",
        lambda w: ["schedule.rates=[0.001,-1]", "logger=csv"],
        ["schedule.rates=[0.001, -1]", "positive"],
    ),
    "one class weight": (
        "train",
        lambda w: ["class_weights=[2]", "logger=csv"],
        ["class_weights=[2]", "two positive weights"],
    ),
    "inner fold out of range": (
        "train",
        lambda w: ["inner_fold=3", "logger=csv"],
        ["inner_fold=3", "0 to 2"],
    ),
    "no inner fold without a fixed schedule": (
        "train",
        lambda w: ["inner_fold=null", "logger=csv"],
        ["inner_fold=null", "schedule.fixed_epochs"],
    ),
    "resume from a missing checkpoint": (
        "train",
        lambda w: ["ckpt_path=/nonexistent/last.ckpt", "logger=csv"],
        ["ckpt_path", "does not exist"],
    ),
    "unknown protocol": (
        "train",
        lambda w: ["protocol=sometimes", "logger=csv"],
        ["protocol='sometimes'"],
    ),
    "user cohort missing": (
        "train",
        lambda w: ["data=cohort", f"data.cohort={w.root / 'nope.csv'}", "logger=csv"],
        ["nope.csv", "does not exist"],
    ),
    "splits without inner folds": (
        "train",
        lambda w: _splits(
            w, {"outer": [{"train": ["p1"], "test": ["p2"]}, {"train": ["p2"], "test": ["p1"]}]}
        ),
        ["splits_final.json", "inner"],
    ),
    "splits with an empty outer fold": (
        "train",
        lambda w: _splits(
            w,
            {
                "outer": [{"train": ["p1", "p2"], "test": []}, {"train": [], "test": ["p1", "p2"]}],
                "inner": [[], []],
            },
        ),
        ["splits_final.json", "outer fold 0", "empty"],
    ),
    "splits whose inner folds miss a patient": (
        "train",
        lambda w: _splits(
            w,
            {
                "outer": [{"train": ["p1"], "test": ["p2"]}, {"train": ["p2"], "test": ["p1"]}],
                "inner": [[{"train": [], "val": ["p1"]}], [{"train": [], "val": ["p1"]}]],
            },
        ),
        ["splits_final.json", "inner fold 1.0"],
    ),
    "splits file not JSON": (
        "train",
        lambda w: (lambda a: ((w.root / "cohort" / "splits_final.json").write_text("{oops"), a)[1])(
            _splits(w, {})
        ),
        ["splits_final.json", "not valid JSON"],
    ),
    # --- predict
    # -------------------------------------------------------------------------------------
    "predict --id ..": ("predict", lambda w: _predict(w, "--id", ".."), ["'..'"]),
    "predict --id .": ("predict", lambda w: _predict(w, "--id", "."), ["'.'"]),
    "predict --id ../x": ("predict", lambda w: _predict(w, "--id", "../x"), ["'../x'"]),
    "predict --id empty": ("predict", lambda w: _predict(w, "--id", ""), ["patient id", "empty"]),
    "predict --out is a user folder": (
        "predict",
        lambda w: _predict(w, "--id", "p1", out=w.root / "mine"),
        ["mine", "not written by rimnet"],
    ),
    "predict --out is the cohort folder": (
        "predict",
        lambda w: _cohort_predict(w)[:-4] + ["--out", str(w.root / "cohort")],
        ["cohort", "holds this command's input"],
    ),
    "predict cohort id '..'": (
        "predict",
        lambda w: (w.rewrite_csv(a=_cell("patient_id", "..")), _cohort_predict(w))[1],
        ["'..'"],
    ),
    "predict cohort id empty": (
        "predict",
        lambda w: (w.rewrite_csv(a=_cell("patient_id", "")), _cohort_predict(w))[1],
        ["patient id", "empty"],
    ),
    "predict --id with --cohort": (
        "predict",
        lambda w: _cohort_predict(w, "--id", "x"),
        ["--id", "--cohort"],
    ),
    "predict --at with --cohort": (
        "predict",
        lambda w: _cohort_predict(w, "--at", "1", "2", "3"),
        ["--at", "--cohort"],
    ),
    "bundle missing": (
        "predict",
        lambda w: _predict(w, bundle=w.root / "none.pt"),
        ["none.pt", "does not exist"],
    ),
    "bundle is garbage": (
        "predict",
        lambda w: (
            (w.root / "junk.pt").write_bytes(b"junk" * 100),
            _predict(w, bundle=w.root / "junk.pt"),
        )[1],
        ["junk.pt", "damaged"],
    ),
    "bundle with a pickled payload": (
        "predict",
        lambda w: (
            payload_file(w.root / "evil.pt", w.root / "PWNED", lambda p: {"x": p}),
            _predict(w, bundle=w.root / "evil.pt"),
        )[1],
        ["evil.pt", "refuses"],
    ),
    "bundle without patch": (
        "predict",
        lambda w: _bundle_variant(
            w, "nopatch.pt", lambda b: {k: v for k, v in b.items() if k != "patch"}
        ),
        ["nopatch.pt", "patch"],
    ),
    "bundle of a newer version": (
        "predict",
        lambda w: _bundle_variant(w, "new.pt", lambda b: {**b, "bundle_version": 99}),
        ["new.pt", "version 99"],
    ),
    "image the bundle needs is missing": (
        "predict",
        lambda w: _predict(w)[:4] + _predict(w)[6:],
        ["missing flair", "--image flair=<file>"],
    ),
    "point outside the image": (
        "predict",
        lambda w: _predict(w, "--id", "p1", "--at", "99", "0", "0"),
        ["outside the image"],
    ),
    # --- export
    # --------------------------------------------------------------------------------------
    "export from a user folder": (
        "export",
        lambda w: [str(w.root / "mine"), str(w.root / "b.pt")],
        ["mine", "neither"],
    ),
    "export a checkpoint with a payload": (
        "export",
        lambda w: [str(_run_folder(w, payload=True)), str(w.root / "b.pt")],
        ["best-epoch000.ckpt", "refuses"],
    ),
    "export over a user file": (
        "export",
        lambda w: [str(_run_folder(w, payload=False)), str(w.root / "mine" / "notes.txt")],
        ["notes.txt", "will not overwrite"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, world, capsys):
    stage, prepare, words = CASES[case]
    argv = prepare(world)
    before = tree_hash(world.root)
    code = run_entry(stage, argv)
    err = capsys.readouterr().err
    assert code == 2, f"{case}: exit {code}\n{err[-3000:]}"
    line = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert line, f"{case}: no 'error:' line in\n{err[-3000:]}"
    for word in words:
        assert word in err, f"{case}: {word!r} not in {line}"
    assert "weights_only=False" not in err
    assert "Traceback" not in err
    assert tree_hash(world.root) == before, f"{case}: the user's files changed"
    assert not (world.root / "PWNED").exists(), f"{case}: a pickled payload ran"
    assert not list(Path.cwd().iterdir()), (
        f"{case}: wrote into the working folder: {list(Path.cwd().iterdir())}"
    )


def test_the_matrix_is_large_enough():
    assert len(CASES) >= 40


def test_cohort_predict_goes_on_after_a_failing_patient(world, capsys):
    truncate(world.patient_file("p2", "phase"))
    out = world.root / "results"
    code = run_entry(
        "predict",
        [
            "--bundle",
            str(world.bundle),
            "--cohort",
            str(world.csv),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert code == 2
    assert "patient p2" in capsys.readouterr().err
    assert (out / "p1" / "lesions.csv").exists() and not (out / "p2").exists()
    assert pd.read_csv(out / "lesions_all.csv")["patient_id"].unique().tolist() == ["p1"]
    assert pd.read_csv(out / "patients.csv")["patient_id"].tolist() == ["p1"]
    failures = pd.read_csv(out / "failures.csv")
    assert failures["patient_id"].tolist() == ["p2"] and "phase file" in failures["error"][0]


def test_rerun_replaces_only_its_own_folders(world):
    out = world.root / "results"
    assert run_entry("predict", _predict(world, "--id", "p1")) == 0
    first = (out / "p1" / "lesions.csv").read_bytes()
    (out / "theirs").mkdir()
    (out / "theirs" / "keep.txt").write_text("x")
    assert (
        run_entry("predict", _predict(world, "--id", "p1")) == 0
    )  # a rerun replaces the tool's own folder
    assert (out / "p1" / "lesions.csv").read_bytes() == first
    assert (
        run_entry("predict", _predict(world, "--id", "theirs")) == 2
    )  # but not a folder it did not write
    assert (out / "theirs" / "keep.txt").read_text() == "x"


def test_run_folder_of_the_user_is_refused(world, capsys):
    """Hydra itself writes .hydra/ into hydra.run.dir before rimnet starts; rimnet then refuses the
    folder and leaves the user's files as they were."""
    notes = (world.root / "mine" / "notes.txt").read_bytes()
    assert run_entry("train", [f"hydra.run.dir={world.root / 'mine'}", "logger=csv"]) == 2
    assert "not written by rimnet" in capsys.readouterr().err
    assert (world.root / "mine" / "notes.txt").read_bytes() == notes
    assert not (world.root / "mine" / OWNER_MARKER).exists()


def test_cohort_predict_with_a_phase_bundle_from_another_folder(world, capsys):
    """The FLAIR column the QC report shows is read relative to the CSV, as every image is."""
    torch.manual_seed(0)
    net = RimNet(n_modalities=1, widths=[2, 4, 4], fc=[8])
    phase = world.root / "phase.pt"
    untrained_bundle([net], ["phase"]).save(phase)
    out = world.root / "results"
    argv = ["--bundle", str(phase), "--cohort", str(world.csv), "--out", str(out)]
    assert run_entry("predict", [*argv, "--device", "cpu"]) == 0, capsys.readouterr().err
    assert sorted(pd.read_csv(out / "patients.csv")["patient_id"]) == ["p1", "p2"]


def test_qc_report_of_a_single_uncalibrated_model(world, capsys):
    """One model: no ensemble spread on the cards; the 0.5 fallback threshold is flagged; the
    cohort index names bundle, threshold and date; the probability map opens windowed 0-1."""
    out = world.root / "qc"
    argv = ["--bundle", str(world.bundle), "--cohort", str(world.csv), "--out", str(out)]
    assert run_entry("predict", [*argv, "--device", "cpu", "--report"]) == 0
    capsys.readouterr()
    page = (out / "p1" / "report.html").read_text()
    assert "p = " in page and "±" not in page
    assert "The threshold is not calibrated" in page
    index = (out / "report.html").read_text()
    assert "bundle bundle.pt" in index and "threshold 0.500 (not calibrated)" in index
    assert "written 20" in index
    header = nib.load(out / "p1" / "probability.nii.gz").header
    assert (float(header["cal_min"]), float(header["cal_max"])) == (0.0, 1.0)
