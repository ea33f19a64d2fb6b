"""Bundles and ``rimnet predict`` on a held-out synthetic patient."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import compose_train

from rimnet.cli import main as cli_main
from rimnet.data.cohort import read_cohort
from rimnet.inference import Bundle, BundleError, Predictor, lesion_at, write_patient
from rimnet.inference.bundle import export_bundle
from rimnet.train import train


@pytest.fixture(scope="module")
def trained(smoke_project, tmp_path_factory):
    """A tiny phase + FLAIR model trained on the smoke cohort, exported as a bundle."""
    root, work = smoke_project, tmp_path_factory.mktemp("inf")
    cfg = compose_train(
        [
            "+experiment=phase_flair",
            "data=smoke",
            "logger=csv",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=3",
        ],
        root,
        work / "run",
    )
    train(cfg)
    (work / "run" / "resolved_config.yaml").unlink()  # the checkpoint alone describes the run
    assert not (work / "run" / ".hydra").exists()
    bundle = export_bundle(work / "run", work / "bundle.pt")
    splits = json.loads((root / "data" / "splits" / "smoke.json").read_text())
    cohort = read_cohort(root / "data" / "synth" / "smoke" / "cohort.csv").set_index(
        "patient_id", drop=False
    )
    held_out = cohort.loc[splits["outer"][0]["test"][0]]
    return {
        "root": root,
        "bundle": bundle,
        "patient": held_out,
        "cohort_csv": root / "data" / "synth" / "smoke" / "cohort.csv",
    }


def test_bundle_round_trip(trained, tmp_path):
    b = Bundle.load(trained["bundle"])
    assert b.modalities == ["phase", "flair"] and len(b.members) == 1 and 0 <= b.threshold <= 1
    assert (
        b.model
        == {
            "n_modalities": 2,
            "widths": [8, 16, 32],
            "fc": [256, 128, 64],
            "bottleneck": 1,
            "patch_size": 28,
            "dropout": 0.0,
            "fusion": "early+late",
        }
        and b.context == 32
        and b.experiment == "phase_flair"
    )
    assert "95%" in b.threshold_rule
    b.save(tmp_path / "copy.pt")
    c = Bundle.load(tmp_path / "copy.pt")
    assert c.modalities == b.modalities and c.threshold == b.threshold and c.rules == b.rules
    assert all(torch.equal(b.members[0][k], c.members[0][k]) for k in b.members[0])
    torch.load(tmp_path / "copy.pt", weights_only=True)  # plain tensors and values only


def test_predict_one_held_out_patient(trained, tmp_path):
    row = trained["patient"]
    pred = Predictor(trained["bundle"])
    r = pred.predict_files(
        row.patient_id,
        {"phase": row.phase, "flair": row.flair},
        row.lesion_mask,
        anatomy=row.anatomy,
    )
    folder = write_patient(r, tmp_path)
    ref = nib.load(row.phase)
    for name, dtype in (("candidates.nii.gz", np.uint8), ("probability.nii.gz", np.float32)):
        img = nib.load(folder / name)
        assert img.shape == ref.shape and np.allclose(img.affine, ref.affine)
        # the input's header: qform/sform codes and units, the map's own type, no scaling
        assert img.header.get_qform(coded=True)[1] == ref.header.get_qform(coded=True)[1]
        assert img.header.get_sform(coded=True)[1] == ref.header.get_sform(coded=True)[1]
        assert img.header.get_xyzt_units() == ref.header.get_xyzt_units()
        assert img.get_data_dtype() == dtype and img.header.get_slope_inter() == (None, None)
    les = pd.read_csv(folder / "lesions.csv", keep_default_na=False)
    assert les.lesion_id.is_unique and len(les) == r.labels.max()
    itk = (folder / "candidates_itksnap.txt").read_text()
    assert '2 220 20 60 1 1 1 "rim+"' in itk and '3 160 160 160 1 1 1 "excluded"' in itk
    assert "1 rim- 70 130 180 255" in (folder / "candidates.ctbl").read_text()
    assert (folder / "candidates.lut").read_text().splitlines()[1] == "2 0.863 0.078 0.235 rim+"
    codes = np.asarray(nib.load(folder / "candidates.nii.gz").dataobj)
    probs = np.asarray(nib.load(folder / "probability.nii.gz").dataobj)
    for cand in les.itertuples():
        comp = r.labels == cand.lesion_index
        assert set(np.unique(codes[comp])) == {
            {"rim-": 1, "rim+": 2, "excluded": 3}[cand.decision]
        }  # once, whole, coded
        assert np.allclose(probs[comp], 0.0 if cand.decision == "excluded" else cand.prob)
    assert ((codes > 0) == (r.labels > 0)).all()
    kept = les[les.excluded == ""]
    summary = json.loads((folder / "summary.json").read_text())
    assert (
        summary["rim_pos_count"]
        == int((kept.prob >= summary["threshold"]).sum())
        == int((les.decision == "rim+").sum())
    )
    assert summary["chronic_active"] == (summary["rim_pos_count"] >= 4)
    assert set(kept.location) <= {"periventricular", "juxtacortical", "deep_wm", "other"}


def test_candidates_match_preprocessing(trained):
    row = trained["patient"]
    r = Predictor(trained["bundle"]).predict_row(row)
    cache = pd.read_csv(
        trained["root"] / "data" / "cache" / "smoke" / "lesions.csv", keep_default_na=False
    )
    orig = cache[(cache.patient_id == row.patient_id) & (cache.augmentation == "none")].set_index(
        "lesion_id"
    )
    mine = r.lesions.set_index("lesion_id")
    assert sorted(orig.index) == sorted(mine.index)
    np.testing.assert_allclose(
        mine.loc[orig.index, ["center_i", "center_j", "center_k", "volume_mm3"]],
        orig[["center_i", "center_j", "center_k", "volume_mm3"]],
    )
    # the rim+-in-patch rule needs the consensus rim map, which new patients do not have
    expected = orig.excluded.replace("rim_plus_in_patch", "")
    assert (mine.loc[orig.index, "excluded"] == expected).all()


def test_lesion_at_point_in_voxels_and_mm(trained):
    r = Predictor(trained["bundle"]).predict_row(trained["patient"])
    cand = r.lesions.iloc[len(r.lesions) // 2]
    ijk = np.argwhere(r.labels == cand.lesion_index)[0]
    assert lesion_at(r, ijk).lesion_id == cand.lesion_id
    xyz = (r.affine @ np.append(ijk, 1.0))[:3]
    assert lesion_at(r, xyz, mm=True).lesion_id == cand.lesion_id
    assert lesion_at(r, [0, 0, 0]) is None
    with pytest.raises(ValueError, match="outside the image"):
        lesion_at(r, [-5, 0, 0])


def test_ensemble_is_the_mean_of_its_members(trained, tmp_path):
    b = Bundle.load(trained["bundle"])
    torch.manual_seed(0)
    other = {
        k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() else v
        for k, v in b.members[0].items()
    }
    two = Bundle(**{**b.__dict__, "members": [b.members[0], other]})
    one_b = Bundle(**{**b.__dict__, "members": [other]})
    row = trained["patient"]
    p_two = Predictor(two).predict_row(row).lesions.prob.to_numpy()
    p_a = Predictor(b).predict_row(row).lesions.prob.to_numpy()
    p_b = Predictor(one_b).predict_row(row).lesions.prob.to_numpy()
    np.testing.assert_allclose(p_two, (p_a + p_b) / 2, atol=1e-6)
    r = Predictor(two).predict_row(row)
    np.testing.assert_allclose(r.lesions.prob_std, np.abs(p_a - p_b) / 2, atol=1e-6)


def test_cli_cohort_mode_and_at(trained, tmp_path, capsys):
    sub = pd.read_csv(trained["cohort_csv"]).head(2)
    sub.drop(columns=["rim_mask", "rater1_mask", "rater2_mask"]).to_csv(
        trained["cohort_csv"].parent / "two.csv", index=False
    )
    assert (
        cli_main(
            [
                "predict",
                "--bundle",
                str(trained["bundle"]),
                "--cohort",
                str(trained["cohort_csv"].parent / "two.csv"),
                "--out",
                str(tmp_path / "many"),
                "--device",
                "cpu",
                "--tta",
            ]
        )
        == 0
    )
    merged = pd.read_csv(tmp_path / "many" / "lesions_all.csv")
    assert set(merged.patient_id) == set(sub.patient_id)
    assert len(pd.read_csv(tmp_path / "many" / "patients.csv")) == 2
    row = trained["patient"]
    r = Predictor(trained["bundle"]).predict_row(row)
    ijk = np.argwhere(r.labels == 1)[0]
    code = cli_main(
        [
            "predict",
            "--bundle",
            str(trained["bundle"]),
            "--phase",
            row.phase,
            "--flair",
            row.flair,
            "--lesion-mask",
            row.lesion_mask,
            "--out",
            str(tmp_path / "one"),
            "--id",
            row.patient_id,
            "--device",
            "cpu",
            "--at",
            *map(str, ijk),
        ]
    )
    assert code == 0
    assert f"lesion {row.patient_id}_L0001" in capsys.readouterr().out


def test_bad_inputs_get_clear_errors(trained, tmp_path, capsys):
    row = trained["patient"]
    base = [
        "predict",
        "--bundle",
        str(trained["bundle"]),
        "--lesion-mask",
        row.lesion_mask,
        "--out",
        str(tmp_path / "o"),
        "--device",
        "cpu",
    ]
    assert cli_main(base + ["--phase", row.phase]) == 2  # the bundle needs FLAIR too
    assert "give --image flair=<file>" in capsys.readouterr().err
    bad = nib.load(row.flair)
    arr = np.asarray(bad.dataobj).copy()
    arr[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(arr, bad.affine), tmp_path / "flair_nan.nii.gz")
    assert (
        cli_main(
            base
            + ["--phase", row.phase, "--flair", str(tmp_path / "flair_nan.nii.gz"), "--id", "p9"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "patient p9: flair file" in err and "NaN" in err
    assert not (tmp_path / "o").exists() or not any(
        (tmp_path / "o").iterdir()
    )  # nothing half-written
    obj = torch.load(trained["bundle"], weights_only=True)
    torch.save({**obj, "bundle_version": 99}, tmp_path / "future.pt")
    with pytest.raises(BundleError, match="bundle version 99"):
        Bundle.load(tmp_path / "future.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(BundleError, match="not a RimNet bundle"):
        Bundle.load(tmp_path / "foreign.pt")
    with pytest.raises(BundleError, match="neither a training run folder"):
        export_bundle(tmp_path, tmp_path / "x.pt")


def test_predict_resample_puts_another_grid_onto_the_phase_grid(trained, tmp_path, capsys):
    """A FLAIR stored on a 2x coarser grid: an error that names --resample, then with --resample
    the same lesions as the co-registered FLAIR (probabilities close: only FLAIR was degraded)."""
    row = trained["patient"]
    flair = nib.load(row.flair)
    coarse = np.asarray(flair.dataobj)[::2, ::2, ::2]
    affine = flair.affine.copy()
    affine[:3, :3] *= 2
    nib.save(nib.Nifti1Image(coarse, affine), tmp_path / "flair_coarse.nii.gz")
    args = ["predict", "--bundle", str(trained["bundle"]), "--lesion-mask", row.lesion_mask,
            "--phase", row.phase, "--flair", str(tmp_path / "flair_coarse.nii.gz"),
            "--id", "p1", "--device", "cpu"]  # fmt: skip
    assert cli_main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "--resample" in capsys.readouterr().err
    assert cli_main([*args, "--out", str(tmp_path / "b"), "--resample"]) == 0
    lesions = pd.read_csv(tmp_path / "b" / "p1" / "lesions.csv", keep_default_na=False)
    assert len(lesions) > 0 and lesions.prob.between(0, 1).all()


def test_predict_reads_a_freesurfer_aseg_as_anatomy(trained, tmp_path, capsys):
    """The README's ``--anatomy aseg.nii.gz``: FreeSurfer labels are recognised and mapped, so
    the location column equals the one from the hand-mapped framework codes; a map that is
    neither is an error (exit 2) instead of a silent misread."""
    from rimnet.data.anatomy import rimnet_to_aseg

    row = trained["patient"]
    ref = nib.load(row.anatomy)
    codes = np.asarray(ref.dataobj)
    right = np.indices(codes.shape)[0] >= codes.shape[0] // 2
    nib.save(nib.Nifti1Image(rimnet_to_aseg(codes, right), ref.affine), tmp_path / "aseg.nii.gz")
    nib.save(nib.Nifti1Image((codes * 9).astype(np.int16), ref.affine), tmp_path / "odd.nii.gz")
    base = ["predict", "--bundle", str(trained["bundle"]), "--phase", row.phase]
    base += ["--flair", row.flair, "--lesion-mask", row.lesion_mask, "--device", "cpu"]
    locations = {}
    for name, anatomy in (("codes", row.anatomy), ("aseg", str(tmp_path / "aseg.nii.gz"))):
        args = [*base, "--anatomy", anatomy, "--out", str(tmp_path / name), "--id", "p"]
        assert cli_main(args) == 0
        les = pd.read_csv(tmp_path / name / "p" / "lesions.csv", keep_default_na=False)
        locations[name] = les.location.tolist()
    assert locations["aseg"] == locations["codes"] and len(set(locations["codes"])) > 1
    capsys.readouterr()
    args = [*base, "--anatomy", str(tmp_path / "odd.nii.gz"), "--out", str(tmp_path / "odd")]
    assert cli_main([*args, "--id", "p"]) == 2
    err = capsys.readouterr().err
    assert "odd.nii.gz" in err and "neither" in err


def test_qc_reports_open_in_a_real_browser(trained, tmp_path):
    """Cohort mode writes report.html per patient (one card per candidate) and an index; the
    files load nothing from outside; Chromium renders them with every card."""
    import re
    import subprocess

    from helpers import headless_browser
    from PIL import Image

    csv = tmp_path / "two.csv"
    read_cohort(trained["cohort_csv"]).head(2).to_csv(csv, index=False)  # absolute paths
    out = tmp_path / "qc"
    args = ["predict", "--bundle", str(trained["bundle"]), "--cohort", str(csv)]
    assert cli_main([*args, "--out", str(out), "--device", "cpu"]) == 0
    index = (out / "report.html").read_text()
    browser = headless_browser()
    for pid in pd.read_csv(csv).patient_id:
        assert f"href='{pid}/report.html'" in index
        page = out / pid / "report.html"
        text = page.read_text()
        lesions = pd.read_csv(out / pid / "lesions.csv", keep_default_na=False)
        assert text.count("<div class='card ") == len(lesions) > 0
        assert text.count("class='card excluded'") == (lesions.decision == "excluded").sum()
        bare = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
        assert not re.search(r"https?:|//|url\(|@import", bare)  # nothing from outside
        assert all(src.startswith("data:image/png;base64,") for src in re.findall(
            r"src='([^']*)'", text))  # fmt: skip
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        dom = subprocess.run(
            [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True
        ).stdout
        assert dom.count('<div class="card ') == len(lesions)
        shot = tmp_path / f"{pid}.png"
        cmd = [browser, *flags, "--window-size=1200,900", f"--screenshot={shot}", page.as_uri()]
        subprocess.run(cmd, capture_output=True, timeout=120)
        pixels = np.asarray(Image.open(shot).convert("L"), np.float32)
        assert pixels.shape == (900, 1200) and pixels.std() > 20  # not a blank page
    one = ["predict", "--bundle", str(trained["bundle"]), "--phase", trained["patient"].phase]
    one += ["--flair", trained["patient"].flair, "--lesion-mask", trained["patient"].lesion_mask]
    assert cli_main([*one, "--out", str(tmp_path / "one"), "--id", "p", "--device", "cpu"]) == 0
    assert not (tmp_path / "one" / "p" / "report.html").exists()  # off for one patient
    assert cli_main([*one, "--out", str(tmp_path / "two"), "--id", "p", "--report"]) == 0
    assert (tmp_path / "two" / "p" / "report.html").exists()


def test_predict_logs_the_report_pictures_to_wandb(trained, tmp_path, monkeypatch):
    """--wandb: an offline run beside the outputs with each patient's overview, one card per
    candidate (captioned like the report) and the lesions table."""
    from helpers import read_offline_wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    p = trained["patient"]
    args = ["predict", "--bundle", str(trained["bundle"]), "--phase", p.phase, "--flair", p.flair]
    out = tmp_path / "w"
    args += ["--lesion-mask", p.lesion_mask, "--out", str(out), "--id", "p", "--device", "cpu"]
    assert cli_main([*args, "--wandb"]) == 0
    assert not (out / "p" / "report.html").exists()  # the pictures do not need the report
    lesions = pd.read_csv(out / "p" / "lesions.csv", keep_default_na=False)
    run = next((out / "wandb").glob("offline-run-*"))
    history, _ = read_offline_wandb(next(run.glob("run-*.wandb")))
    logged = {k: v for row in history for k, v in row.items()}
    assert logged["qc/p/cards/count"] == len(lesions) > 0
    assessed = lesions[lesions.decision != "excluded"]  # the report lists excluded ones last
    best = assessed.sort_values("prob", ascending=False).iloc[0]
    assert logged["qc/p/cards/captions"][0].startswith(f"{best.lesion_id}: {best.decision}, p = ")
    assert logged["qc/p/overview/_type"] == "image-file"
    for name in [logged["qc/p/overview/path"], *logged["qc/p/cards/filenames"]]:
        assert (run / "files" / name).stat().st_size > 1000
    assert logged["lesions/nrows"] == len(lesions)
