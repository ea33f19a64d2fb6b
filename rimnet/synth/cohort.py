"""Write a synthetic cohort to disk exactly as a user would bring one: NIfTI files +
``cohort.csv``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from rimnet.data.contract import MASKS, MODALITIES
from rimnet.errors import ConfigError
from rimnet.io import atomic_dir, atomic_path, claim_folder, fingerprint, write_json
from rimnet.synth.bids import PIPELINE, head_motion, write_bids_subject, write_dataset_files
from rimnet.synth.phantom import SITES, make_patient

# 4: phase post-processed from the wrapped raw phase with rimnet.prepare's code;
# 5: T2* magnitude from R2* of the paramagnetic sources and field gradients
SYNTH_VERSION = 5


@dataclass(frozen=True)
class Scale:
    """Size of a synthetic cohort."""

    basel: int
    lausanne: int
    lesion_scale: float
    min_rim: int = (
        0  # at least this many true rim+ lesions per patient (smoke: every test sees both classes)
    )
    fov_mm: tuple[float, float, float] = (64.0, 72.0, 52.0)


SCALES: dict[str, Scale] = {
    "smoke": Scale(basel=3, lausanne=3, lesion_scale=1.0, min_rim=3),
    "default": Scale(basel=8, lausanne=8, lesion_scale=1.0),
    "paper": Scale(basel=69, lausanne=55, lesion_scale=1.0),
}


def affine_for(shape: tuple[int, ...], voxel_mm: float) -> np.ndarray:
    """RAS affine with isotropic voxels and the world origin at the volume centre."""
    aff = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    aff[:3, 3] = -(np.array(shape) - 1) / 2 * voxel_mm
    return aff


def generate_cohort(
    out: str | Path,
    scale: str = "smoke",
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
    fmt: str = "cohort",
) -> Path:
    """Generate a cohort into ``out`` and return the path of its ``cohort.csv`` (``fmt="cohort"``,
    the data contract) or of the BIDS root (``fmt="bids"``: :mod:`rimnet.synth.bids`, the input
    of ``rimnet prepare``; the same patients for the same seed).

    A cohort already generated there with the same scale, seed and generator version is reused.
    Each patient folder and the CSV are written atomically, so an interrupted run leaves no
    half-written patient behind and simply resumes. ``out`` must be new, empty or a folder this
    function wrote before (it is marked as the tool's).

    Example:
        >>> csv = generate_cohort("/tmp/smoke", "smoke", seed=0)  # doctest: +SKIP
    """
    if scale not in SCALES:
        raise ConfigError(f"scale={scale!r} is not a cohort scale; choose one of {sorted(SCALES)}")
    if fmt not in ("cohort", "bids"):
        raise ConfigError(f"format={fmt!r}; choose cohort or bids")
    out = claim_folder(out, "synthetic-cohort", "synthetic cohort folder (out=)")
    sc = SCALES[scale]
    params = {"scale": scale, "seed": seed, "version": SYNTH_VERSION, **asdict(sc)}
    if fmt == "bids":
        params["format"] = "bids"
        params["bids_layout"] = 2  # sidecars, space- entities, dataset files
    key = fingerprint(params)
    csv_path = out / "cohort.csv"
    meta_path = out / "synth.json"
    done = out / "participants.tsv" if fmt == "bids" else csv_path
    if (
        not force
        and done.exists()
        and meta_path.exists()
        and json.loads(meta_path.read_text()).get("fingerprint") == key
    ):
        return csv_path
    if meta_path.exists() and json.loads(meta_path.read_text()).get("fingerprint") != key:
        force = True  # different parameters: patient folders from before are stale
    jobs = [("basel", i) for i in range(sc.basel)] + [("lausanne", i) for i in range(sc.lausanne)]
    rows, truth_rows, sites, motions = [], [], {}, {}
    for n, (site_name, i) in enumerate(
        tqdm(jobs, desc=f"synth {scale}", unit="patient", disable=not progress)
    ):
        pid = f"{site_name[:3]}{i + 1:03d}"
        rng = np.random.default_rng([seed, n])
        patient = make_patient(
            SITES[site_name], sc.fov_mm, sc.lesion_scale, rng, min_rim=sc.min_rim
        )
        if fmt == "bids":
            motion = head_motion(np.random.default_rng([seed, n, 7]))
            sites[pid], motions[pid] = site_name, motion.round(6).tolist()
            _write_bids_patient(out, pid, patient, motion, force)
        elif force or not (out / pid / "lesion_mask.nii.gz").exists():
            _write_patient(out / pid, patient)
        row = {"patient_id": pid, "site": site_name, "scanner": patient.scanner}
        row.update({c: f"{pid}/{c}.nii.gz" for c in MODALITIES + MASKS})
        rows.append(row)
        truth_rows += [{"patient_id": pid, **asdict(les)} for les in patient.lesions]
    if fmt == "bids":
        write_dataset_files(out, sites, motions)
        truth = out / "derivatives" / PIPELINE / "truth.csv"
    else:
        truth = out / "truth.csv"
    with atomic_path(truth) as tmp:
        pd.DataFrame(truth_rows).to_csv(tmp, index=False)
    if fmt == "cohort":
        with atomic_path(csv_path) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    write_json(meta_path, {"fingerprint": key, **params})
    return out if fmt == "bids" else csv_path


def _write_bids_patient(out: Path, pid: str, patient, motion: np.ndarray, force: bool) -> None:
    raw = out / f"sub-{pid}"
    derivative = out / "derivatives" / PIPELINE / f"sub-{pid}"
    if not force and raw.exists() and derivative.exists():
        return
    aff = affine_for(patient.images["t2star"].shape, patient.voxel_mm)
    with atomic_dir(derivative, "synthetic-patient", "derivative folder") as dtmp:
        with atomic_dir(raw, "synthetic-patient", "subject folder") as rtmp:
            write_bids_subject(rtmp, dtmp, pid, patient, motion, aff)


def _write_patient(pdir: Path, patient) -> None:
    with atomic_dir(pdir, "synthetic-patient", "patient folder") as tmp:
        some = next(iter(patient.images.values()))
        aff = affine_for(some.shape, patient.voxel_mm)
        for name, arr in patient.images.items():
            nib.save(nib.Nifti1Image(arr.astype(np.float32), aff), tmp / f"{name}.nii.gz")
        for name, arr in patient.masks.items():
            dtype = (
                np.int16
                if arr.max() > 255 or name.endswith("rim_mask") or "rater" in name
                else np.uint8
            )
            nib.save(nib.Nifti1Image(arr.astype(dtype), aff), tmp / f"{name}.nii.gz")
