"""``rimnet prepare``: BIDS inputs -> phase post-processing, registration, anatomy -> cohort.csv."""

from __future__ import annotations

import json
import os
import shutil
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
from rimnet.prepare.bids import BidsError, EchoChoice, find_sessions
from rimnet.prepare.cohort import PrepareConfig, prepare_bids
from rimnet.prepare.phase import PhaseError, laplacian_unwrap, to_radians
from rimnet.synth.cohort import generate_cohort

ROOT = Path(__file__).resolve().parents[1]
# The official BIDS validator (Node, legacy 1.x): on PATH, or where `make bids-validator` puts it.
VALIDATOR = shutil.which("bids-validator") or shutil.which(
    "bids-validator", path=str(ROOT / ".ci" / "node" / "node_modules" / ".bin")
)
# Warnings the validator may give, each explained in docs/prepare.md.
EXPLAINED = {"INCONSISTENT_PARAMETERS", "TOO_FEW_AUTHORS", "NO_AUTHORS"}


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
    assert to_radians(np.array([0.0, 4095.0]))[1].startswith("int-unsigned, no Units")
    assert to_radians(np.array([-4096.0, 4095.0]), units="arbitrary")[1] == (
        "int-signed, Units: arbitrary: read from the values"
    )
    np.testing.assert_allclose(
        to_radians(np.array([-90.0, 180.0]), units="deg")[0], [-np.pi / 2, np.pi]
    )
    with pytest.raises(PhaseError, match="neither radians"):
        to_radians(np.array([-9000.0, 3.5]), "sub-01: phase file p.nii.gz")
    with pytest.raises(PhaseError, match="Units rad but values"):
        to_radians(np.array([-180.0, 180.0]), units="rad")  # degrees labelled as radians
    with pytest.raises(PhaseError, match="Units 'Hz' in its sidecar"):
        to_radians(np.array([0.0]), units="Hz")
    n = 48
    x = np.mgrid[:n, :n, :n].astype(float)
    true = 9.0 * np.exp(-((x - n / 2) ** 2).sum(0) / (2 * 6.0**2))  # ~3 wraps at the centre
    u = laplacian_unwrap(np.angle(np.exp(1j * true)), np.ones((n,) * 3, bool), np.ones(3))
    inner = (slice(8, -8),) * 3
    assert np.corrcoef(u[inner].ravel(), true[inner].ravel())[0, 1] > 0.99


def _touch(path: Path, data: np.ndarray | None = None, affine=None, **sidecar) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((4, 4, 4), np.float32) if data is None else data
    nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), path)
    if sidecar:
        path.with_name(path.name.removesuffix(".nii.gz") + ".json").write_text(json.dumps(sidecar))


def _pipeline(root: Path, name: str) -> Path:
    """A derivatives pipeline folder that describes itself, as BIDS asks."""
    folder = root / "derivatives" / name
    folder.mkdir(parents=True, exist_ok=True)
    desc = {"Name": name, "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [{"Name": name}]}  # fmt: skip
    (folder / "dataset_description.json").write_text(json.dumps(desc))
    return folder


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
    _pipeline(tmp_path, "samseg")  # lst does not describe itself: read all the same, with a warning
    with pytest.raises(BidsError, match="2 candidate files for lesion_mask") as exc:
        find_sessions(tmp_path)
    assert "lst" in str(exc.value) and "samseg" in str(exc.value)
    assert "bids_filter='{lesion_mask:{pipeline:lst}}'" in str(exc.value)
    [ses] = find_sessions(tmp_path, filters={"lesion_mask": {"pipeline": "samseg"}})
    assert "samseg" in str(ses.files["lesion_mask"])
    (tmp_path / "derivatives" / "lst").rename(tmp_path / "lst-old")
    [ses] = find_sessions(tmp_path)
    assert ses.patient_id == "01_m12" and ses.spaces == {"lesion_mask": "FLAIR"}
    with pytest.raises(BidsError, match=r"no folder for participant\(s\) \['02'\]"):
        find_sessions(tmp_path, ["02"])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, smoke_csv):
    """The smoke phantom as BIDS (raw wrapped phase, 1 mm FLAIR with head motion, masks and aseg
    in FLAIR space), prepared for two patients; and the same patients written directly (the
    session's smoke cohort: the same scale and seed)."""
    root = tmp_path_factory.mktemp("prepare")
    bids = generate_cohort(root / "bids", "smoke", seed=0, progress=False, fmt="bids")
    direct = smoke_csv.parent
    cfg = PrepareConfig(phase_filter="gaussian", participant_label=["bas001", "lau002"], n_jobs=2)
    csv = prepare_bids(bids, root / "out", cfg, progress=False)
    return {"root": root, "bids": bids, "direct": direct, "csv": csv, "cfg": cfg}


def test_prepared_cohort_matches_the_direct_path(prepared):
    """Registered lesion masks overlap the EPI-space truth (Dice >= 0.8), candidates within 5 %,
    anatomy and FLAIR agree, and the processed phase is the phantom's own (r >= 0.9: the phantom
    processes its raw phase the way prepare does, so this checks units, grid and mask)."""
    out = prepared["csv"].parent
    cohort = read_cohort(prepared["csv"])
    direct = read_cohort(prepared["direct"] / "cohort.csv").set_index("patient_id")
    assert cohort.patient_id.tolist() == ["bas001", "lau002"]
    six = ndimage.generate_binary_structure(3, 1)
    for row in cohort.itertuples():

        def load(name: str, source=row) -> np.ndarray:
            return np.asarray(nib.load(getattr(source, name)).dataobj)

        truth = direct.loc[row.patient_id]
        a, b = load("lesion_mask", truth) > 0, load("lesion_mask") > 0
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.8
        n_a, n_b = ndimage.label(a, six)[1], ndimage.label(b, six)[1]
        assert abs(n_a - n_b) <= 0.05 * n_a + 1
        brain = load("anatomy", truth) >= 2
        assert (load("anatomy", truth) == load("anatomy"))[brain].mean() > 0.9
        assert np.corrcoef(load("flair", truth)[brain], load("flair")[brain])[0, 1] > 0.9
        assert np.corrcoef(load("phase", truth)[brain], load("phase")[brain])[0, 1] >= 0.9
    report = pd.read_csv(out / "prepare_report.csv", keep_default_na=False)
    assert list(report.patient_id) == ["bas001", "lau002"]
    assert (report.registration_metric < -0.5).all()
    assert report.phase_steps.str.contains("unwrapped (Laplacian)", regex=False).all()
    assert report.phase_steps.str.contains("Units: rad", regex=False).all()  # from the sidecar
    assert (report.echo_time_ms == 35.0).all() and (report.field_strength_T == 3.0).all()
    assert all((out / png).stat().st_size > 10_000 for png in report.checkerboard)
    vol = load_patient(cohort.iloc[0])  # the data contract holds: preprocess can read it
    assert set(vol.masks) >= {"lesion_mask", "rim_mask", "anatomy"}


def test_prepare_writes_a_bids_derivatives_dataset(prepared):
    """pybids reads the output back as a derivatives dataset: every image in space-T2starw (the
    magnitude is its reference), each with a sidecar naming sources that exist."""
    from bids import BIDSLayout

    out, bids = prepared["csv"].parent, prepared["bids"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Version"]
    layout = BIDSLayout(out, validate=False, is_derivative=True)
    images = layout.get(subject="bas001", extension=".nii.gz")
    kinds = {
        (f.entities.get("space"), f.entities.get("desc"), f.entities["suffix"]) for f in images
    }
    assert kinds == {
        (None, None, "T2starw"), ("T2starw", "preproc", "T2starw"), ("T2starw", "preproc", "FLAIR"),
        ("T2starw", "lesion", "mask"), ("T2starw", "rim", "mask"), ("T2starw", "rater1", "mask"),
        ("T2starw", "rater2", "mask"), ("T2starw", "rimnet", "dseg"),
    }  # fmt: skip
    for image in images:
        meta = layout.get_metadata(image.path)
        assert meta["Sources"], image.path
        for uri in meta["Sources"]:
            assert (bids / uri.removeprefix("bids:raw:")).exists(), uri
    assert layout.get_metadata(images[0].path)  # sidecars are found by pybids' inheritance
    phase = layout.get(subject="bas001", part="phase", desc="preproc", extension=".nii.gz")[0]
    assert layout.get_metadata(phase.path)["Units"] == "rad"
    assert "figures/" in (out / ".bidsignore").read_text()


@pytest.mark.skipif(
    VALIDATOR is None, reason="bids-validator (npm, 1.x) not installed; .ci/run has it"
)
def test_the_official_validator_accepts_the_synthetic_dataset_and_its_derivatives(prepared):
    version = subprocess.run([VALIDATOR, "--version"], capture_output=True, text=True).stdout
    assert version.strip().startswith("1."), version
    for root in (prepared["bids"], prepared["csv"].parent):
        run = subprocess.run([VALIDATOR, str(root), "--json"], capture_output=True, text=True)
        issues = json.loads(run.stdout)["issues"]
        errors = [(e["key"], [f["file"]["relativePath"] for f in e["files"]][:3])
                  for e in issues["errors"]]  # fmt: skip
        assert errors == [], (root, errors)
        assert {w["key"] for w in issues["warnings"]} <= EXPLAINED, root


def test_prepare_resumes_and_reuses_finished_patients(prepared):
    out = prepared["csv"].parent
    phase = out / read_cohort(prepared["csv"]).iloc[0].phase
    before = phase.stat().st_mtime_ns
    prepare_bids(prepared["bids"], out, prepared["cfg"], progress=False)
    assert phase.stat().st_mtime_ns == before


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
    seg = _pipeline(bids, "lesionseg") / "sub-p7" / "ses-01" / "anat"
    les = np.asarray(nib.load(src.lesion_mask).dataobj).astype(np.int16)
    _touch(seg / "sub-p7_ses-01_space-T2starw_desc-lesion_mask.nii.gz", les, t2.affine)
    codes = np.asarray(nib.load(src.anatomy).dataobj)
    aseg = rimnet_to_aseg(codes, np.indices(codes.shape)[0] > codes.shape[0] // 2)
    fs = _pipeline(bids, "freesurfer") / "sub-p7" / "ses-01" / "anat"
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
    mapped = np.asarray(nib.load(out / cohort.anatomy[0]).dataobj)
    assert (mapped == codes).mean() > 0.95  # T1w -> FLAIR -> T2*, all one grid here: ~ identity
    assert cohort.anatomy[0].startswith("sub-p7/ses-01/anat/sub-p7_ses-01_space-T2starw_")
    assert json.loads((out / "sub-p7" / "ses-01" / "prepare.json").read_text())["fingerprint"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["GeneratedBy"][0]["Description"].startswith("rimnet prepare bids=")


def _foreign_layout(src, root: Path) -> Path:
    """Written here by hand, not by rimnet: sub-a with two sessions, each with two 3D-EPI
    acquisitions (acq-hr, acq-lr) and phase in degrees (``Units: deg``); sub-b with a 3-echo
    GRE (``MEGRE``, TE 10/25/40 ms), phase in radians."""
    t2 = nib.load(src.t2star)
    aff, mag = t2.affine, np.asarray(t2.dataobj, np.float32)
    phase = np.angle(np.exp(1j * np.asarray(nib.load(src.phase).dataobj)))
    flair = np.asarray(nib.load(src.flair).dataobj, np.float32)
    lesions = np.asarray(nib.load(src.lesion_mask).dataobj).astype(np.int16)
    seg = _pipeline(root, "lesionseg")
    scanner = {"MagneticFieldStrength": 3}
    for ses in ("1", "2"):
        anat, pre = root / "sub-a" / f"ses-{ses}" / "anat", f"sub-a_ses-{ses}"
        for acq, scale in (("hr", 1.0), ("lr", 0.5)):
            _touch(anat / f"{pre}_acq-{acq}_part-mag_T2starw.nii.gz", mag * scale, aff,
                   EchoTime=0.035, **scanner)  # fmt: skip
            degrees = np.rad2deg(phase).astype(np.float32)
            _touch(anat / f"{pre}_acq-{acq}_part-phase_T2starw.nii.gz", degrees, aff,
                   EchoTime=0.035, Units="deg")  # fmt: skip
        _touch(anat / f"{pre}_FLAIR.nii.gz", flair, aff)
        mask = (
            seg / "sub-a" / f"ses-{ses}" / "anat" / f"{pre}_space-T2starw_desc-lesion_mask.nii.gz"
        )
        _touch(mask, lesions, aff)
    anat = root / "sub-b" / "anat"
    for echo, te in enumerate((0.010, 0.025, 0.040), 1):
        _touch(anat / f"sub-b_echo-{echo}_part-mag_MEGRE.nii.gz", mag * np.exp(-te / 0.05), aff,
               EchoTime=te, **scanner)  # fmt: skip
        wrapped = np.angle(np.exp(1j * phase * te / 0.035)).astype(np.float32)
        _touch(anat / f"sub-b_echo-{echo}_part-phase_MEGRE.nii.gz", wrapped, aff, EchoTime=te,
               Units="rad", **scanner)  # fmt: skip
    _touch(anat / "sub-b_FLAIR.nii.gz", flair, aff)
    _touch(seg / "sub-b" / "anat" / "sub-b_space-T2starw_desc-lesion_mask.nii.gz", lesions, aff)
    (root / "participants.tsv").write_text("participant_id\tsite\nsub-a\tbern\nsub-b\tbern\n")
    return root


def test_pybids_sessions_acquisitions_echoes_and_units(prepared, tmp_path):
    """Sessions, acq- variants told apart by a filter (the error names it), a multi-echo GRE
    (nearest 35 ms, a chosen echo, or the magnitudes' root sum of squares) and phase in degrees
    scaled from ``Units``; then prepare through the command line with a filter file."""
    src = read_cohort(prepared["direct"] / "cohort.csv").iloc[0]
    bids = _foreign_layout(src, tmp_path / "foreign")
    with pytest.raises(
        BidsError,
        match=r"sub-a ses-1: 2 candidate files for t2star; choose one "
        r"with bids_filter='\{t2star:\{acq:hr\}\}' \(they differ in acq: hr, lr\)",
    ):
        find_sessions(bids)  # fmt: skip
    hr = {"t2star": {"acq": "hr"}, "phase": {"acq": "hr"}}
    sessions = find_sessions(bids, ["a"], filters=hr)
    assert [s.patient_id for s in sessions] == ["a_1", "a_2"]
    assert all("acq-hr" in s.files[r].name for s in sessions for r in ("t2star", "phase"))
    assert sessions[0].metadata["phase"]["Units"] == "deg"
    [b] = find_sessions(bids, ["b"])
    assert "echo-3" in b.files["phase"].name and "echo-3" in b.files["t2star"].name
    assert b.echo_note == "echo 3 of [1, 2, 3] (TE 40.0 ms, nearest 35 ms)"
    [b1] = find_sessions(bids, ["b"], echo=EchoChoice(1))
    assert "echo-1" in b1.files["t2star"].name and "echo-1" in b1.files["phase"].name
    [rss] = find_sessions(bids, ["b"], echo=EchoChoice("rss"))
    assert len(rss.magnitude_echoes) == 3 and "echo-3" in rss.files["phase"].name
    with pytest.raises(BidsError, match="echo=5, but its echoes are"):
        find_sessions(bids, ["b"], echo=EchoChoice(5))

    with pytest.raises(BidsError, match=r"sub-b: no t2star file matching bids_filter"):
        find_sessions(bids, ["b"], filters=hr)  # a filter holds for every subject

    (tmp_path / "filter.json").write_text(json.dumps({**hr, "flair": {"ses": "1"}}))
    out = tmp_path / "prepared"
    cmd = [sys.executable, "-m", "rimnet.prepare", f"bids={bids}", f"out={out}",
           "phase_filter=gaussian", "progress=false"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reports, rows = [], []
    for args in ([f"bids_filter={tmp_path / 'filter.json'}", "participant_label=[a]"],
                 ["echo=rss", "participant_label=[b]"]):  # fmt: skip
        run = subprocess.run([*cmd, *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        rows.append(read_cohort(out / "cohort.csv"))
        reports.append(pd.read_csv(out / "prepare_report.csv", keep_default_na=False))
    assert rows[0].patient_id.tolist() == ["a_1"]  # the ses filter keeps session 1
    report = pd.concat(reports).set_index("patient_id")
    assert "degrees, Units: deg" in report.phase_steps["a_1"]
    assert report.echo["b"].startswith("magnitude: root sum of squares of echoes [1, 2, 3]")
    assert report.echo_time_ms["b"] == 40.0
    rows = pd.concat(rows).set_index("patient_id")
    mags = [
        np.asarray(nib.load(p).dataobj, np.float64)
        for p in sorted(bids.glob("sub-b/anat/*mag_MEGRE.nii.gz"))
    ]
    combined = np.asarray(nib.load(rows.t2star["b"]).dataobj)
    np.testing.assert_allclose(combined, np.sqrt(sum(m**2 for m in mags)), rtol=1e-5)
    brain = np.asarray(nib.load(src.anatomy).dataobj) >= 2
    pa, pb = (np.asarray(nib.load(rows.phase[k]).dataobj)[brain] for k in ("a_1", "b"))
    assert np.corrcoef(pa, pb)[0, 1] > 0.9  # degrees scaled to radians: echo 3 is the same field
    assert abs(np.std(pb) / np.std(pa) - 40 / 35) < 0.1
