"""Modalities named by the data: a cohort column the project has never seen (``qsm``) is cached,
trained, exported, evaluated and used for prediction through the real commands, with no source
change; names that cannot be modalities are refused with the key to change."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from test_bad_inputs import run_entry

from rimnet.data.contract import MODALITIES, modality_problem, ordered_modalities
from rimnet.inference import Bundle
from rimnet.training.checks import modality_problems


def qsm_cohort(smoke_csv: Path, root: Path) -> Path:
    """The smoke cohort with a ``qsm`` column: a susceptibility-like map from each patient's
    phase (its local, high-pass part, sign turned so that paramagnetic rims are bright)."""
    cohort = pd.read_csv(smoke_csv, dtype=str, keep_default_na=False)
    images = [c for c in cohort.columns if cohort[c].str.endswith(".nii.gz").all()]
    for c in images:
        cohort[c] = [str((smoke_csv.parent / p).resolve()) for p in cohort[c]]
    root.mkdir(parents=True)
    paths = []
    for row in cohort.itertuples():
        img = nib.load(row.phase)
        phase = np.asarray(img.dataobj, dtype=np.float32)
        qsm = -(phase - ndimage.gaussian_filter(phase, 4.0))
        paths.append(str(root / f"{row.patient_id}_qsm.nii.gz"))
        nib.save(nib.Nifti1Image(qsm.astype(np.float32), img.affine), paths[-1])
    cohort["qsm"] = paths
    csv = root / "cohort.csv"
    cohort.to_csv(csv, index=False)
    return csv


def test_a_modality_the_project_has_never_seen(smoke_csv, tmp_path, monkeypatch, capsys):
    """``modalities=[qsm,flair]`` on a cohort with a ``qsm`` column: the cache stores and names
    the two channels, the bundle records them, ``predict --image qsm=...`` uses them and refuses a
    patient without one, and the evaluation names the configuration from its run."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RIMNET_ROOT", str(tmp_path / "root"))
    csv = qsm_cohort(smoke_csv, tmp_path / "cohort")
    base = [
        "data=cohort",
        f"data.cohort={csv}",
        "modalities=[qsm,flair]",
        "experiment_name=qsm_flair",
        "logger=csv",
    ]
    # the cache must store the channel the run trains on: the error names the key to change
    assert run_entry("train", [*base, "trainer.max_epochs=1"]) == 2
    err = capsys.readouterr().err
    assert "qsm is not among the cached channels data.preprocess.modalities" in err

    run = tmp_path / "sweep" / "qsm_flair" / "fold0"
    code = run_entry(
        "train",
        [
            *base,
            "data.preprocess.modalities=[qsm,flair]",
            "data.preprocess.elastic_copies=0",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            f"hydra.run.dir={run}",
        ],
    )
    assert code == 0, capsys.readouterr().err[-3000:]
    meta = json.loads((csv.parent / "rimnet_cache" / "meta.json").read_text())
    assert meta["modalities"] == ["qsm", "flair"] and meta["shape"][1] == 2

    assert run_entry("export", [str(run), str(tmp_path / "qsm.pt")]) == 0
    assert Bundle.load(tmp_path / "qsm.pt").modalities == ["qsm", "flair"]
    assert "modalities ['qsm', 'flair']" in capsys.readouterr().out

    patient = pd.read_csv(csv).iloc[0]
    argv = ["--bundle", str(tmp_path / "qsm.pt"), "--id", "p1", "--device", "cpu"]
    argv += ["--lesion-mask", patient.lesion_mask, "--flair", patient.flair]
    assert run_entry("predict", [*argv, "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "needs the images ['qsm', 'flair']; missing qsm: give --image qsm=<file>" in err
    assert not (tmp_path / "none").exists()
    out = tmp_path / "pred"
    assert run_entry("predict", [*argv, "--image", f"qsm={patient.qsm}", "--out", str(out)]) == 0
    lesions = pd.read_csv(out / "p1" / "lesions.csv")
    assessed = lesions[lesions["decision"] != "excluded"]
    assert len(assessed) and assessed["prob"].between(0, 1).all()

    report = tmp_path / "report"
    args = [f"sweep_dir={tmp_path / 'sweep'}", f"out_dir={report}", "n_folds=1"]
    assert run_entry("evaluate", args) == 0, capsys.readouterr().err[-2000:]
    aucs = pd.read_csv(report / "auc.csv").set_index("experiment")
    assert aucs.loc["qsm_flair", "configuration"] == "RimNet: qsm + FLAIR"
    assert aucs.loc["qsm_flair", "study"] == "beyond"


def test_predict_takes_images_by_name_and_refuses_malformed_ones(tmp_path, capsys):
    """``--image NAME=PATH`` beside the shortcuts: a missing ``=``, a mask's name or a repeated
    modality is refused (exit 2) before any work."""
    out = str(tmp_path / "out")
    common = ["--bundle", str(tmp_path / "absent.pt"), "--lesion-mask", "m.nii.gz", "--out", out]
    for image, message in (
        (["--image", "qsm"], "give NAME=PATH"),
        (["--image", "lesion_mask=x.nii.gz"], "is a mask or table column"),
        (["--image", "Qsm=x.nii.gz"], "lower-case letters"),
        (["--phase", "a.nii.gz", "--image", "phase=b.nii.gz"], "phase is given twice"),
    ):
        assert run_entry("predict", [*common, *image]) == 2
        assert message in capsys.readouterr().err
    assert not Path(out).exists()


@pytest.mark.parametrize(
    ("modalities", "stored", "message"),
    [
        (["qsm", "flair"], ["qsm", "flair"], None),
        (["flair", "flair"], ["flair"], "different image columns"),
        ([], ["flair"], "different image columns"),
        (["rim_mask"], ["rim_mask"], "is a mask or table column"),
        (["t1w"], list(MODALITIES), "data.preprocess.modalities=[phase, t2star, flair, t1w]"),
    ],
)
def test_a_run_names_modalities_its_cache_stores(modalities, stored, message):
    problems = modality_problems(modalities, stored)
    assert (problems == []) if message is None else message in problems[0]


def test_built_in_modalities_come_first_and_others_keep_their_order():
    assert ordered_modalities(["t1w", "flair", "qsm", "phase"]) == ["phase", "flair", "t1w", "qsm"]
    assert all(modality_problem(m) is None for m in (*MODALITIES, "qsm", "t1w", "mag_echo2"))
