"""Cohort validation errors, the cache's contents, reuse and rebuild."""

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import simple_patient, write_cohort

from rimnet.data.cache import PreprocessConfig, build_cache, load_cache
from rimnet.data.candidates import CandidateRules
from rimnet.data.cohort import CohortError

FAST = PreprocessConfig.paper(elastic_copies=1)


def test_cache_layout_and_lesion_table(tmp_path):
    csv = write_cohort(tmp_path / "c", {"p1": simple_patient(), "p2": simple_patient(seed=1)})
    cache = build_cache(csv, tmp_path / "cache", FAST, progress=False)
    for name in ("patches.bin", "lesions.csv", "patients.csv", "meta.json"):
        assert (tmp_path / "cache" / name).exists()
    les = cache.lesions
    # one rim+ lesion per patient: original + 9 rotations, each with 1 elastic copy = 20 patches
    assert len(les) == 40 and cache.patches.shape == (40, 3, 32, 32, 32)
    required = [
        "patient_id",
        "lesion_id",
        "site",
        "label",
        "volume_mm3",
        "center_i",
        "center_j",
        "center_k",
        "location",
        "excluded",
        "consensus_needed",
        "rater1",
        "rater2",
        "augmentation",
        "source_lesion_id",
    ]
    assert all(c in les.columns for c in required)
    orig = les[les.augmentation == "none"]
    assert orig.lesion_id.tolist() == orig.source_lesion_id.tolist() == ["p1_L0001", "p2_L0001"]
    assert orig[["center_i", "center_j", "center_k"]].values.tolist() == [[19.5, 19.5, 19.5]] * 2
    p = np.asarray(cache.patches, dtype=np.float32)
    assert p.min() >= -1 and p.max() <= 1
    assert p.reshape(40, 3, -1).max(-1).min() == 1.0  # every channel reaches +1


def test_augmented_copies_keep_their_source(smoke_cache):
    les = smoke_cache.lesions
    orig = les[les.augmentation == "none"].set_index("lesion_id")
    aug = les[les.augmentation != "none"]
    assert len(aug) > 0
    src = orig.loc[aug.source_lesion_id]
    assert (src.patient_id.to_numpy() == aug.patient_id.to_numpy()).all()
    assert (src.label.to_numpy() == aug.label.to_numpy()).all()
    # rotations only for rim+, elastic for both; excluded candidates are never augmented
    assert set(aug.loc[aug.augmentation.str.startswith("rot"), "label"]) == {1}
    assert (src.excluded == "").all()
    rim_pos = (orig.label == 1) & (orig.excluded == "")
    rim_neg = (orig.label == 0) & (orig.excluded == "")
    assert len(aug) == rim_pos.sum() * (10 * 2 - 1) + rim_neg.sum() * 1


def test_cache_is_reused_then_rebuilt_on_change(tmp_path):
    csv = write_cohort(tmp_path / "c", {"p1": simple_patient()})
    build_cache(csv, tmp_path / "cache", FAST, progress=False)
    stamp = (tmp_path / "cache" / "patches.bin").stat().st_mtime_ns
    build_cache(csv, tmp_path / "cache", FAST, progress=False)
    assert (tmp_path / "cache" / "patches.bin").stat().st_mtime_ns == stamp  # reused
    c2 = build_cache(
        csv, tmp_path / "cache", PreprocessConfig.paper(elastic_copies=0), progress=False
    )
    assert len(c2.lesions) == 10  # parameters changed: rebuilt without elastic copies
    vols = simple_patient()
    vols["lesion_mask"][:] = 0
    vols["rim_mask"][:] = 0  # a rim annotation without its lesion would be an error
    for col in ("lesion_mask", "rim_mask"):
        nib.save(nib.Nifti1Image(vols[col], np.eye(4)), tmp_path / "c" / "p1" / f"{col}.nii.gz")
    c3 = build_cache(
        csv, tmp_path / "cache", PreprocessConfig.paper(elastic_copies=0), progress=False
    )
    assert len(c3.lesions) == 0 and c3.patients.n_candidates.tolist() == [
        0
    ]  # input changed: rebuilt


def test_patient_with_empty_mask_is_kept(tmp_path):
    csv = write_cohort(
        tmp_path / "c", {"p1": simple_patient(), "empty": simple_patient(lesion=False)}
    )
    cache = build_cache(csv, tmp_path / "cache", FAST, progress=False)
    assert cache.patients.set_index("patient_id").n_candidates.to_dict() == {"p1": 1, "empty": 0}


def _bad(tmp_path, mutate, match, **write_kw):
    patients = {"p1": simple_patient(), "p2": simple_patient(seed=1)}
    mutate(patients)
    csv = write_cohort(tmp_path / "c", patients, **write_kw)
    with pytest.raises(CohortError, match=match):
        build_cache(csv, tmp_path / "cache", FAST, progress=False)
    assert not (tmp_path / "cache").exists()
    assert not [
        p for p in tmp_path.iterdir() if p.name.startswith(".cache") and p.suffix != ".lock"
    ]  # nothing half-written


def test_nan_voxels(tmp_path):
    def m(p):
        p["p2"]["flair"][3, 3, 3] = np.nan

    _bad(tmp_path, m, r"patient p2: flair file .*flair.nii.gz has 1 NaN/Inf")


def test_not_3d(tmp_path):
    def m(p):
        p["p1"]["t2star"] = np.zeros((40, 40, 40, 2), np.float32)

    _bad(tmp_path, m, r"patient p1: t2star file .* is 4-D")


def test_shape_mismatch(tmp_path):
    def m(p):
        p["p2"]["flair"] = np.zeros((40, 40, 39), np.float32)

    _bad(tmp_path, m, r"patient p2: flair file .* has shape \(40, 40, 39\)")


def test_affine_mismatch(tmp_path):
    _bad(
        tmp_path,
        lambda p: None,
        r"patient p1: lesion_mask file .* affine",
        affines={("p1", "lesion_mask"): np.diag([2.0, 1, 1, 1])},
    )


def test_missing_file(tmp_path):
    csv = write_cohort(tmp_path / "c", {"p1": simple_patient()})
    os.remove(tmp_path / "c" / "p1" / "phase.nii.gz")
    with pytest.raises(CohortError, match=r"patient p1: phase file .*phase.nii.gz does not exist"):
        build_cache(csv, tmp_path / "cache", FAST, progress=False)


def test_duplicate_ids_and_unknown_site(tmp_path):
    csv = write_cohort(tmp_path / "c", {"p1": simple_patient()})
    df = pd.read_csv(csv)
    pd.concat([df, df]).to_csv(tmp_path / "c" / "dup.csv", index=False)
    with pytest.raises(CohortError, match=r"duplicate patient id\(s\) \['p1'\]"):
        build_cache(tmp_path / "c" / "dup.csv", tmp_path / "cache", FAST, progress=False)
    df.assign(site="geneva").to_csv(tmp_path / "c" / "site.csv", index=False)
    with pytest.raises(CohortError, match=r"patient p1: unknown site 'geneva'"):
        build_cache(
            tmp_path / "c" / "site.csv",
            tmp_path / "cache",
            PreprocessConfig.paper(elastic_copies=1, sites=["basel", "lausanne"]),
            progress=False,
        )


def test_opt_in_resampling_to_the_phase_grid(tmp_path):
    p = simple_patient()
    p["flair"] = np.ones((20, 20, 20), np.float32)  # 2 mm FLAIR covering the same field of view
    aff2 = np.diag([2.0, 2.0, 2.0, 1.0])
    aff2[:3, 3] = 0.5
    csv = write_cohort(tmp_path / "c", {"p1": p}, affines={("p1", "flair"): aff2})
    with pytest.raises(CohortError):
        build_cache(csv, tmp_path / "cache", FAST, progress=False)
    cache = build_cache(
        csv,
        tmp_path / "cache",
        PreprocessConfig.paper(elastic_copies=1, resample=True),
        progress=False,
    )
    assert cache.patches.shape[0] == 20
    assert load_cache(tmp_path / "cache").meta["params"]["resample"] is True


def test_preprocess_and_synth_cli(tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    csv = write_cohort(tmp_path / "c", {"p1": simple_patient()})
    cmd = [
        sys.executable,
        "-m",
        "rimnet.preprocess",
        f"cohort={csv}",
        f"cache_dir={tmp_path / 'cache'}",
        "params.elastic_copies=0",
    ]
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    les = pd.read_csv(tmp_path / "cache" / "lesions.csv")
    assert len(les) == 10 and (tmp_path / "cache" / "meta.json").exists()
    os.remove(tmp_path / "c" / "p1" / "flair.nii.gz")
    out = subprocess.run(
        cmd[:-1] + [f"cache_dir={tmp_path / 'cache2'}"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (
        out.returncode == 2
        and "patient p1: flair file" in out.stderr
        and not (tmp_path / "cache2").exists()
    )
    out = subprocess.run(
        [sys.executable, "-m", "rimnet.synth", "--help"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and "scale" in out.stdout


def test_parallel_preprocessing_writes_the_same_cache(tmp_path):
    patients = {f"p{i}": simple_patient(seed=i) for i in range(3)}
    csv = write_cohort(tmp_path / "c", patients)
    one = build_cache(
        csv, tmp_path / "one", PreprocessConfig.paper(elastic_copies=1, n_jobs=1), progress=False
    )
    two = build_cache(
        csv, tmp_path / "two", PreprocessConfig.paper(elastic_copies=1, n_jobs=2), progress=False
    )
    for name in ("patches.bin", "lesions.csv", "patients.csv"):
        assert (one.path / name).read_bytes() == (two.path / name).read_bytes(), name
    assert one.meta["fingerprint"] == two.meta["fingerprint"]  # n_jobs is not part of the result


def test_the_paper_parameters_are_written_once():
    """``conf/patches/paper.yaml`` holds the values; the dataclasses only name the keys."""
    import dataclasses

    from omegaconf import OmegaConf

    from rimnet.config import CONFIG_DIR, register_resolvers

    register_resolvers()  # the built-in modalities come from the data contract
    for cls in (PreprocessConfig, CandidateRules):
        defaults = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        ]
        assert not defaults, f"{cls.__name__} repeats defaults of paper.yaml: {defaults}"
    yaml = OmegaConf.to_container(
        OmegaConf.load(Path(CONFIG_DIR, "patches", "paper.yaml")), resolve=True
    )
    paper = PreprocessConfig.paper()
    assert dataclasses.asdict(paper) == yaml
    assert (
        PreprocessConfig.paper(rules={"min_volume_mm3": 0}).rules.max_voxels
        == (yaml["rules"]["max_voxels"])
    )
