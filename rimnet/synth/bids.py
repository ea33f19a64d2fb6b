"""Write a synthetic patient as a BIDS subject, the way a scanner and a lesion pipeline would:
raw wrapped 3D-EPI phase and magnitude on the EPI grid, FLAIR at 1 mm with a small known rigid
offset (head motion between the scans), the lesion/rim/rater masks and a FreeSurfer-style aseg in
FLAIR space under ``derivatives/rimnet-synth/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from rimnet.data.anatomy import rimnet_to_aseg
from rimnet.synth.phantom import Patient

PIPELINE = "rimnet-synth"
FLAIR_MM = 1.0


def head_motion(rng: np.random.Generator) -> np.ndarray:
    """A 4x4 rigid transform (FLAIR world mm -> EPI world mm): rotations up to 3 degrees about
    each axis and translations up to 2 mm."""
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", rng.uniform(-3, 3, 3), degrees=True).as_matrix()
    m[:3, 3] = rng.uniform(-2, 2, 3)
    return m


def _affine(shape: tuple[int, ...], voxel_mm: float) -> np.ndarray:
    aff = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    aff[:3, 3] = -(np.array(shape) - 1) / 2 * voxel_mm
    return aff


def _to_flair(vol: np.ndarray, epi_affine: np.ndarray, flair_affine: np.ndarray, shape, motion,
              order: int) -> np.ndarray:  # fmt: skip
    """Sample an EPI-grid volume on the FLAIR grid: FLAIR voxel -> FLAIR world -> EPI world ->
    EPI voxel."""
    mat = np.linalg.inv(epi_affine) @ motion @ flair_affine
    return ndimage.affine_transform(
        vol.astype(np.float32), mat[:3, :3], mat[:3, 3], output_shape=shape, order=order
    )


def write_bids_subject(
    raw: Path,
    derivative: Path,
    subject: str,
    patient: Patient,
    motion: np.ndarray,
    epi_affine: np.ndarray,
) -> None:
    """Write one patient into its raw and derivative subject folders (filled atomically by the
    caller).

    Args:
        raw: ``<root>/sub-<subject>`` (or its temporary copy).
        derivative: ``<root>/derivatives/rimnet-synth/sub-<subject>`` (or its temporary copy).
        subject: the subject label (without ``sub-``).
        patient: the phantom (``raw_phase`` must be set).
        motion: FLAIR world -> EPI world (:func:`head_motion`).
        epi_affine: the EPI grid's affine.
    """
    anat, deriv = raw / "anat", derivative / "anat"
    anat.mkdir(parents=True)
    deriv.mkdir(parents=True)
    name = f"sub-{subject}"
    epi_shape = patient.images["t2star"].shape
    fov = np.array(epi_shape) * patient.voxel_mm
    shape = tuple(int(np.ceil(f / FLAIR_MM)) for f in fov)
    flair_affine = _affine(shape, FLAIR_MM)

    def save(arr: np.ndarray, aff: np.ndarray, path: Path, dtype: type) -> None:
        nib.save(nib.Nifti1Image(arr.astype(dtype), aff), str(path))

    save(patient.images["t2star"], epi_affine, anat / f"{name}_part-mag_T2starw.nii.gz", np.float32)
    save(patient.raw_phase, epi_affine, anat / f"{name}_part-phase_T2starw.nii.gz", np.float32)
    flair = _to_flair(patient.images["flair"], epi_affine, flair_affine, shape, motion, order=1)
    save(flair, flair_affine, anat / f"{name}_FLAIR.nii.gz", np.float32)
    for role in ("lesion", "rim", "rater1", "rater2"):
        mask = _to_flair(
            patient.masks[f"{role}_mask"], epi_affine, flair_affine, shape, motion, order=0
        )
        save(np.rint(mask), flair_affine, deriv / f"{name}_desc-{role}_mask.nii.gz", np.int16)
    x_world = (epi_affine[:3, :3] @ np.indices(epi_shape).reshape(3, -1))[0].reshape(epi_shape)
    aseg = rimnet_to_aseg(patient.masks["anatomy"], x_world + epi_affine[0, 3] > 0)
    aseg = _to_flair(aseg, epi_affine, flair_affine, shape, motion, order=0)
    save(np.rint(aseg), flair_affine, deriv / f"{name}_space-FLAIR_desc-aseg_dseg.nii.gz", np.int16)


def write_dataset_files(root: Path, sites: dict[str, str], motions: dict[str, list]) -> None:
    """``dataset_description.json`` (raw and derivative), ``participants.tsv`` with the site, and
    the known head motion of every subject (``derivatives/rimnet-synth/head_motion.json``)."""
    desc = {"Name": "rimnet synthetic cohort", "BIDSVersion": "1.9.0", "DatasetType": "raw"}
    (root / "dataset_description.json").write_text(json.dumps(desc, indent=2))
    deriv = root / "derivatives" / PIPELINE
    deriv.mkdir(parents=True, exist_ok=True)
    gen = {**desc, "DatasetType": "derivative", "GeneratedBy": [{"Name": "rimnet.synth"}]}
    (deriv / "dataset_description.json").write_text(json.dumps(gen, indent=2))
    lines = ["participant_id\tsite"] + [f"sub-{s}\t{site}" for s, site in sites.items()]
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    (deriv / "head_motion.json").write_text(json.dumps(motions, indent=1))
