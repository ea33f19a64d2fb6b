"""Write a synthetic patient as a BIDS subject, the way a scanner and a lesion pipeline would:
raw wrapped 3D-EPI phase and magnitude on the EPI grid, FLAIR at 1 mm with a small known rigid
offset (head motion between the scans), the lesion/rim/rater masks and a FreeSurfer-style aseg in
FLAIR space (``space-FLAIR``: the subject's raw FLAIR, named in each sidecar's
``SpatialReference``) under ``derivatives/rimnet-synth/``. Every image has a JSON sidecar with
the acquisition parameters a scanner export carries (``EchoTime``, ``MagneticFieldStrength``,
``Units`` of the phase); the dataset passes the official BIDS validator (docs/prepare.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from rimnet import __version__
from rimnet.data.anatomy import rimnet_to_aseg
from rimnet.synth.phantom import Patient
from rimnet.synth.physics import B0_T, TE_S

PIPELINE = "rimnet-synth"
FLAIR_MM = 1.0
BIDS_VERSION = "1.9.0"
# Acquisition parameters of the sidecars: the paper's 3D-EPI (Table 2) and a typical 3D FLAIR.
EPI = {"EchoTime": TE_S, "RepetitionTime": 0.064, "FlipAngle": 10, "MRAcquisitionType": "3D",
       "PulseSequenceType": "3D segmented EPI", "MagneticFieldStrength": B0_T}  # fmt: skip
FLAIR = {"EchoTime": 0.393, "RepetitionTime": 5.0, "InversionTime": 1.8,
         "MRAcquisitionType": "3D", "MagneticFieldStrength": B0_T}  # fmt: skip
# The FreeSurfer labels the synthetic aseg uses (FreeSurferColorLUT names).
ASEG_NAMES = {
    0: "Unknown", 2: "Left-Cerebral-White-Matter", 3: "Left-Cerebral-Cortex",
    4: "Left-Lateral-Ventricle", 8: "Left-Cerebellum-Cortex", 10: "Left-Thalamus", 16: "Brain-Stem",
    24: "CSF", 41: "Right-Cerebral-White-Matter", 42: "Right-Cerebral-Cortex",
    43: "Right-Lateral-Ventricle", 47: "Right-Cerebellum-Cortex", 49: "Right-Thalamus",
}  # fmt: skip
MASKS = {"lesion": "Lesion", "rim": "ROI", "rater1": "ROI", "rater2": "ROI"}


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

    def save(arr: np.ndarray, aff: np.ndarray, path: Path, dtype: type, meta: dict) -> None:
        img = nib.Nifti1Image(arr.astype(dtype), aff)
        img.header.set_xyzt_units("mm", "sec")
        nib.save(img, str(path))
        side = path.name.removesuffix(".nii.gz") + ".json"
        (path.parent / side).write_text(json.dumps(meta, indent=2) + "\n")

    scanner = {"Manufacturer": "rimnet synthetic", "ManufacturersModelName": patient.scanner}
    mag = anat / f"{name}_part-mag_T2starw.nii.gz"
    save(patient.images["t2star"], epi_affine, mag, np.float32, {**EPI, **scanner})
    phase_meta = {**EPI, **scanner, "Units": "rad"}
    save(patient.raw_phase, epi_affine, anat / f"{name}_part-phase_T2starw.nii.gz", np.float32,
         phase_meta)  # fmt: skip
    flair = _to_flair(patient.images["flair"], epi_affine, flair_affine, shape, motion, order=1)
    save(flair, flair_affine, anat / f"{name}_FLAIR.nii.gz", np.float32, {**FLAIR, **scanner})
    reference = {"SpatialReference": f"bids:raw:{name}/anat/{name}_FLAIR.nii.gz"}
    for role, kind in MASKS.items():
        mask = _to_flair(
            patient.masks[f"{role}_mask"], epi_affine, flair_affine, shape, motion, order=0
        )
        path = deriv / f"{name}_space-FLAIR_desc-{role}_mask.nii.gz"
        save(np.rint(mask), flair_affine, path, np.int16, {"Type": kind, **reference})
    x_world = (epi_affine[:3, :3] @ np.indices(epi_shape).reshape(3, -1))[0].reshape(epi_shape)
    aseg = rimnet_to_aseg(patient.masks["anatomy"], x_world + epi_affine[0, 3] > 0)
    aseg = _to_flair(aseg, epi_affine, flair_affine, shape, motion, order=0)
    path = deriv / f"{name}_space-FLAIR_desc-aseg_dseg.nii.gz"
    save(np.rint(aseg), flair_affine, path, np.int16, reference)


def write_dataset_files(root: Path, sites: dict[str, str], motions: dict[str, list]) -> None:
    """The dataset's own files: ``dataset_description.json`` (raw and derivative),
    ``participants.tsv`` with the site and its ``participants.json``, a README, ``.bidsignore``
    for the generator's fingerprint, the aseg's ``dseg.tsv`` and the known head motion of every
    subject (``derivatives/rimnet-synth/head_motion.json``)."""
    made = [{"Name": "rimnet synth", "Version": __version__,
             "Description": "synthetic dipole-model MS cohort (rimnet.synth)"}]  # fmt: skip
    desc = {"Name": "rimnet synthetic cohort", "BIDSVersion": BIDS_VERSION, "DatasetType": "raw",
            "Authors": ["rimnet synth"], "GeneratedBy": made}  # fmt: skip
    deriv = root / "derivatives" / PIPELINE
    deriv.mkdir(parents=True, exist_ok=True)
    gen = {**desc, "Name": "rimnet synthetic cohort: masks and aseg", "DatasetType": "derivative",
           "DatasetLinks": {"raw": "../../"}}  # fmt: skip
    lines = ["participant_id\tsite"] + [f"sub-{s}\t{site}" for s, site in sites.items()]
    participants = {
        "participant_id": {"Description": "subject label"},
        "site": {"Description": "acquisition site (scanner and protocol, Table 2 of the paper)",
                 "Levels": {s: f"the {s.capitalize()} site" for s in sorted(set(sites.values()))}},
    }  # fmt: skip
    aseg = "index\tname\n" + "".join(f"{i}\t{n}\n" for i, n in sorted(ASEG_NAMES.items()))
    files = {
        root / "dataset_description.json": json.dumps(desc, indent=2),
        root / "participants.tsv": "\n".join(lines),
        root / "participants.json": json.dumps(participants, indent=2),
        root / "README": README,
        root / ".bidsignore": "synth.json\n.rimnet-owned",
        deriv / "dataset_description.json": json.dumps(gen, indent=2),
        deriv / "desc-aseg_dseg.tsv": aseg.rstrip("\n"),
        deriv / "head_motion.json": json.dumps(motions, indent=1),
    }
    for path, text in files.items():
        path.write_text(text + "\n")


README = """\
# rimnet synthetic cohort

Synthetic multiple-sclerosis patients written by `rimnet synth format=bids`: a dipole-model
phantom with lesions, paramagnetic rims, veins and anatomy, imaged the way the paper's protocol
images patients (3D-EPI magnitude and wrapped phase at 3 T, TE 35 ms; 3D FLAIR at 1 mm with a
small head motion between the scans). `derivatives/rimnet-synth/` holds the lesion, rim and rater
masks and a FreeSurfer-style aseg in FLAIR space, the true head motion of every subject and the
phantom's lesion table (`truth.csv`). `synth.json` (ignored by the validator) is the generator's
fingerprint. The data are simulated; no person was scanned.
"""
