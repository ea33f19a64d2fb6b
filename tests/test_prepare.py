"""``rimnet prepare``: BIDS inputs -> phase post-processing, registration, anatomy -> cohort.csv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from rimnet.data.anatomy import AnatomyError, rimnet_to_aseg, to_rimnet_codes
from rimnet.data.cohort import load_patient, read_cohort
from rimnet.prepare.bids import BidsError, find_sessions
from rimnet.prepare.cohort import PrepareConfig, prepare_bids
from rimnet.prepare.phase import PhaseError, laplacian_unwrap, to_radians
from rimnet.synth.cohort import generate_cohort

ROOT = Path(__file__).resolve().parents[1]


def test_anatomy_formats_and_the_misread_made_impossible():
    codes = np.arange(8).repeat(4)
    right = np.tile([False, True], 16)
    aseg = rimnet_to_aseg(codes, right)
    assert aseg.max() > 7
    np.testing.assert_array_equal(to_rimnet_codes(aseg), codes)  # detected, mapped back exactly
    np.testing.assert_array_equal(to_rimnet_codes(codes, "rimnet"), codes)
    with pytest.raises(AnatomyError, match="anatomy_format=rimnet but"):
        to_rimnet_codes(aseg, "rimnet")
    with pytest.raises(AnatomyError, match=r"labels \[9999\] are neither"):
        to_rimnet_codes(np.array([0, 2, 41, 9999]), where="patient p: a.nii.gz")
    # aparc+aseg cortical parcels and WM hypointensities
    assert to_rimnet_codes(np.array([0, 1035, 2002, 77, 5, 44, 15])).tolist() == [
        0, 2, 2, 3, 4, 4, 4
    ]  # fmt: skip


def test_phase_units_and_laplacian_unwrapping():
    assert to_radians(np.array([0.0, 4095.0]))[1] == "int-unsigned"
    with pytest.raises(PhaseError, match="neither radians"):
        to_radians(np.array([-9000.0, 3.5]), "sub-01: phase file p.nii.gz")
    n = 48
    x = np.mgrid[:n, :n, :n].astype(float)
    true = 9.0 * np.exp(-((x - n / 2) ** 2).sum(0) / (2 * 6.0**2))  # ~3 wraps at the centre
    u = laplacian_unwrap(np.angle(np.exp(1j * true)), np.ones((n,) * 3, bool), np.ones(3))
    inner = (slice(8, -8),) * 3
    assert np.corrcoef(u[inner].ravel(), true[inner].ravel())[0, 1] > 0.99


def _touch(path: Path, data: np.ndarray | None = None, affine=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((4, 4, 4), np.float32) if data is None else data
    nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), path)


def test_bids_errors_name_the_subject_and_the_files(tmp_path):
    anat = tmp_path / "sub-01" / "ses-m12" / "anat"
    for name in ("part-mag_T2starw", "part-phase_T2starw", "FLAIR"):
        _touch(anat / f"sub-01_ses-m12_{name}.nii.gz")
    with pytest.raises(
        BidsError,
        match=r"sub-01 ses-m12: no lesion_mask file; expected "
        r"derivatives/<pipeline>/sub-01/ses-m12/anat/sub-01_ses-m12_desc-lesion",
    ):
        find_sessions(tmp_path)  # fmt: skip
    for pipeline in ("lst", "samseg"):
        _touch(
            tmp_path / "derivatives" / pipeline / "sub-01" / "ses-m12" / "anat"
            / "sub-01_ses-m12_desc-lesion_mask.nii.gz"
        )  # fmt: skip
    with pytest.raises(BidsError, match="2 candidate files for lesion_mask") as exc:
        find_sessions(tmp_path)
    assert "lst" in str(exc.value) and "samseg" in str(exc.value)
    (tmp_path / "derivatives" / "lst").rename(tmp_path / "lst-old")
    [ses] = find_sessions(tmp_path)
    assert ses.patient_id == "01_m12" and ses.spaces == {"lesion_mask": "FLAIR"}
    with pytest.raises(BidsError, match=r"no folder for participant\(s\) \['02'\]"):
        find_sessions(tmp_path, ["02"])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The smoke phantom as BIDS (raw wrapped phase, 1 mm FLAIR with head motion, masks and aseg
    in FLAIR space), prepared for two patients; and the same patients written directly."""
    root = tmp_path_factory.mktemp("prepare")
    bids = generate_cohort(root / "bids", "smoke", seed=0, progress=False, fmt="bids")
    direct = generate_cohort(root / "direct", "smoke", seed=0, progress=False).parent
    cfg = PrepareConfig(phase_filter="gaussian", participant_label=["bas001", "lau002"], n_jobs=2)
    csv = prepare_bids(bids, root / "out", cfg, progress=False)
    return {"root": root, "bids": bids, "direct": direct, "csv": csv, "cfg": cfg}


def test_prepared_cohort_matches_the_direct_path(prepared):
    """Registered lesion masks overlap the EPI-space truth (Dice >= 0.8), candidates within 5 %,
    anatomy and FLAIR agree, and the processed phase is the phantom's own (r >= 0.9: the phantom
    processes its raw phase the way prepare does, so this checks units, grid and mask)."""
    out, direct = prepared["csv"].parent, prepared["direct"]
    cohort = read_cohort(prepared["csv"])
    assert cohort.patient_id.tolist() == ["bas001", "lau002"]
    six = ndimage.generate_binary_structure(3, 1)
    for pid in cohort.patient_id:

        def load(folder: Path, name: str, pid: str = pid) -> np.ndarray:
            return np.asarray(nib.load(folder / pid / f"{name}.nii.gz").dataobj)

        a, b = load(direct, "lesion_mask") > 0, load(out, "lesion_mask") > 0
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.8
        n_a, n_b = ndimage.label(a, six)[1], ndimage.label(b, six)[1]
        assert abs(n_a - n_b) <= 0.05 * n_a + 1
        brain = load(direct, "anatomy") >= 2
        assert (load(direct, "anatomy") == load(out, "anatomy"))[brain].mean() > 0.9
        assert np.corrcoef(load(direct, "flair")[brain], load(out, "flair")[brain])[0, 1] > 0.9
        assert np.corrcoef(load(direct, "phase")[brain], load(out, "phase")[brain])[0, 1] >= 0.9
    report = pd.read_csv(out / "prepare_report.csv", keep_default_na=False)
    assert list(report.patient_id) == ["bas001", "lau002"]
    assert (report.registration_metric < -0.5).all()
    assert report.phase_steps.str.contains("unwrapped (Laplacian)", regex=False).all()
    assert all((out / png).stat().st_size > 10_000 for png in report.checkerboard)
    vol = load_patient(cohort.iloc[0])  # the data contract holds: preprocess can read it
    assert set(vol.masks) >= {"lesion_mask", "rim_mask", "anatomy"}


def test_prepare_resumes_and_reuses_finished_patients(prepared):
    out = prepared["csv"].parent
    before = (out / "bas001" / "phase.nii.gz").stat().st_mtime_ns
    prepare_bids(prepared["bids"], out, prepared["cfg"], progress=False)
    assert (out / "bas001" / "phase.nii.gz").stat().st_mtime_ns == before


def test_a_foreign_bids_folder_goes_through_prepare_and_preprocess(prepared, tmp_path):
    """Written by hand here, not by rimnet: a session, integer-coded phase, masks in T2*
    space from one pipeline and an aseg in T1w space (with its T1w) from another, no site
    column."""
    src = read_cohort(prepared["direct"] / "cohort.csv").iloc[0]
    bids = tmp_path / "foreign"
    anat = bids / "sub-p7" / "ses-01" / "anat"
    t2 = nib.load(src.t2star)
    phase = np.asarray(nib.load(src.phase).dataobj)
    coded = np.rint(np.angle(np.exp(1j * phase)) / np.pi * 4096).clip(-4096, 4095)
    _touch(anat / "sub-p7_ses-01_part-mag_T2starw.nii.gz", np.asarray(t2.dataobj), t2.affine)
    _touch(anat / "sub-p7_ses-01_part-phase_T2starw.nii.gz", coded.astype(np.int16), t2.affine)
    _touch(anat / "sub-p7_ses-01_FLAIR.nii.gz", np.asarray(nib.load(src.flair).dataobj), t2.affine)
    _touch(anat / "sub-p7_ses-01_T1w.nii.gz", np.asarray(nib.load(src.flair).dataobj), t2.affine)
    seg = bids / "derivatives" / "lesionseg" / "sub-p7" / "ses-01" / "anat"
    les = np.asarray(nib.load(src.lesion_mask).dataobj).astype(np.int16)
    _touch(seg / "sub-p7_ses-01_space-T2starw_desc-lesion_mask.nii.gz", les, t2.affine)
    codes = np.asarray(nib.load(src.anatomy).dataobj)
    aseg = rimnet_to_aseg(codes, np.indices(codes.shape)[0] > codes.shape[0] // 2)
    fs = bids / "derivatives" / "freesurfer" / "sub-p7" / "ses-01" / "anat"
    _touch(fs / "sub-p7_ses-01_space-T1w_desc-aseg_dseg.nii.gz", aseg, t2.affine)
    (bids / "participants.tsv").write_text("participant_id\tage\nsub-p7\t41\n")
    out = tmp_path / "prepared"
    cmd = [sys.executable, "-m", "rimnet.prepare", f"bids={bids}", f"out={out}", "progress=false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    opts = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True}
    run = subprocess.run(cmd, **opts)
    assert run.returncode == 2 and "sub-p7 ses-01: no site" in run.stderr
    run = subprocess.run([*cmd, "site=geneva"], **opts)
    assert run.returncode == 0, run.stderr
    cohort = pd.read_csv(out / "cohort.csv", keep_default_na=False)
    assert cohort.patient_id.tolist() == ["p7_01"] and cohort.site.tolist() == ["geneva"]
    report = pd.read_csv(out / "prepare_report.csv")
    assert "int-signed" in report.phase_steps[0] and report.t1w_registration_metric[0] < -0.5
    from rimnet.data.cache import PreprocessConfig, build_cache

    cache = build_cache(
        out / "cohort.csv", tmp_path / "cache", PreprocessConfig.paper(elastic_copies=0)
    )
    assert cache.meta["counts"]["patients"] == 1 and cache.meta["counts"]["candidates"] > 10
    mapped = np.asarray(nib.load(out / "p7_01" / "anatomy.nii.gz").dataobj)
    assert (mapped == codes).mean() > 0.95  # T1w -> FLAIR -> T2*, all one grid here: ~ identity
    assert json.loads((out / "p7_01" / "prepare.json").read_text())["fingerprint"]
