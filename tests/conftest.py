"""Shared fixtures: one smoke cohort and one patch cache per test session, tiny hand-built
cohorts."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# The suite trains in float32 and eagerly, whatever the processor (its exactness checks compare
# engines and resumed runs to the last bit); tests/test_hardware.py covers the machine defaults.
os.environ.setdefault("RIMNET_CPU_PRECISION", "32-true")
os.environ.setdefault("RIMNET_COMPILE", "false")
from rimnet.data.cache import PreprocessConfig, build_cache  # noqa: E402
from rimnet.synth.cohort import generate_cohort  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory) -> Path:
    """The session's project root for the smoke cohort, with ``data/`` as ``rimnet train
    data=smoke`` lays it out: the cohort under ``synth/smoke``, its cache under ``cache/smoke``,
    generated once. Tests that train on it write their runs elsewhere (or, the sweeps, under its
    ``outputs/``) and leave its data as they found it."""
    root = tmp_path_factory.mktemp("smoke-project")
    data = root / "data"
    csv = generate_cohort(data / "synth" / "smoke", "smoke", seed=0, progress=False)
    build_cache(
        csv, data / "cache" / "smoke", PreprocessConfig.paper(elastic_copies=1), progress=False
    )
    return root


@pytest.fixture(scope="session")
def smoke_csv(smoke_project) -> Path:
    return smoke_project / "data" / "synth" / "smoke" / "cohort.csv"


@pytest.fixture(scope="session")
def smoke_cache(smoke_project):
    from rimnet.data.cache import load_cache

    return load_cache(smoke_project / "data" / "cache" / "smoke")


def write_cohort(
    root: Path,
    patients: dict[str, dict[str, np.ndarray]],
    voxel_mm: float = 1.0,
    sites: dict[str, str] | None = None,
    affines: dict[tuple[str, str], np.ndarray] | None = None,
) -> Path:
    """Write hand-built volumes as a cohort: ``patients[pid][column] = array``; returns
    cohort.csv."""
    rows = []
    for pid, vols in patients.items():
        (root / pid).mkdir(parents=True, exist_ok=True)
        row = {"patient_id": pid, "site": (sites or {}).get(pid, "basel"), "scanner": "prisma"}
        for col, arr in vols.items():
            aff = (affines or {}).get((pid, col), np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0]))
            nib.save(nib.Nifti1Image(arr, aff), root / pid / f"{col}.nii.gz")
            row[col] = f"{pid}/{col}.nii.gz"
        rows.append(row)
    csv = root / "cohort.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def simple_patient(shape=(40, 40, 40), lesion=True, seed=0) -> dict[str, np.ndarray]:
    """Random images + one 6×6×6 lesion in the middle (rim+ in the consensus map)."""
    rng = np.random.default_rng(seed)
    vols = {m: rng.normal(size=shape).astype(np.float32) for m in ("phase", "t2star", "flair")}
    mask = np.zeros(shape, np.uint8)
    rim = np.zeros(shape, np.int16)
    if lesion:
        mask[17:23, 17:23, 17:23] = 1
        rim[17:23, 17:23, 17:23] = 1
    vols["lesion_mask"] = mask
    vols["rim_mask"] = rim
    return vols
