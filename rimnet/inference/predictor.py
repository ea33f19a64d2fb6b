"""Apply a bundle to new patients: NIfTI → candidates → patches → fold ensemble → CSV + NIfTI maps.

Candidates and patches are extracted exactly as preprocessing does (same rules and code). Outputs
per patient, written atomically into ``<out>/<patient_id>/``:

- ``lesions.csv``: lesion id, centre (voxel and mm), volume, location, exclusion reason, mean
  probability over the fold models, their spread (std), and the decision at the bundle's threshold
  (``rim+``, ``rim-``, or ``excluded`` for candidates the rules leave out);
- ``candidates.nii.gz``: label map in the input's space: 0 background, 1 rim-, 2 rim+, 3 excluded,
  with its colour tables for ITK-SNAP (``candidates_itksnap.txt``), 3D Slicer (``candidates.ctbl``)
  and FSLeyes (``candidates.lut``);
- ``probability.nii.gz``: every assessed candidate's voxels hold its probability (excluded
  candidates, which the rules leave unassessed, hold 0 like the background);
- ``summary.json``: rim+ count and "chronic active" (≥ ``chronic_threshold`` rim+ lesions).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from rimnet.data.candidates import extract_candidates
from rimnet.data.cohort import PatientVolumes, check_patient_id, load_patient
from rimnet.data.contract import center_crop, extract_patch, lesion_id
from rimnet.errors import OwnershipError, RimnetError
from rimnet.inference.bundle import Bundle, BundleError
from rimnet.io import atomic_dir, write_json

DECISION_CODES = {"rim-": 1, "rim+": 2, "excluded": 3}
# Colours of candidates.nii.gz in the viewers (RGB 0-255): rim- blue, rim+ red, excluded grey.
DECISION_COLOURS = {"rim-": (70, 130, 180), "rim+": (220, 20, 60), "excluded": (160, 160, 160)}


def label_tables() -> dict[str, str]:
    """Colour tables of ``candidates.nii.gz`` for ITK-SNAP (label description file), 3D Slicer
    (colour table) and FSLeyes (lookup table), by file name.

    Example:
        >>> sorted(label_tables())
        ['candidates.ctbl', 'candidates.lut', 'candidates_itksnap.txt']
    """
    rows = [(DECISION_CODES[d], d, DECISION_COLOURS[d]) for d in DECISION_CODES]
    itk = ["# ITK-SnAP Label Description File", "# IDX -R- -G- -B- -A-- VIS MSH LABEL"]
    itk.append('0 0 0 0 0 0 0 "Clear Label"')
    itk += [f'{i} {r} {g} {b} 1 1 1 "{name}"' for i, name, (r, g, b) in rows]
    slicer = ["# 3D Slicer color table: rimnet candidates", "0 background 0 0 0 0"]
    slicer += [f"{i} {name} {r} {g} {b} 255" for i, name, (r, g, b) in rows]
    fsl = [f"{i} {r / 255:.3f} {g / 255:.3f} {b / 255:.3f} {name}" for i, name, (r, g, b) in rows]
    return {
        "candidates_itksnap.txt": "\n".join(itk) + "\n",
        "candidates.ctbl": "\n".join(slicer) + "\n",
        "candidates.lut": "\n".join(fsl) + "\n",
    }


@dataclass
class PatientResult:
    """Per-lesion table, summary and the stage timings (seconds) of one patient."""

    patient_id: str
    lesions: pd.DataFrame
    summary: dict
    labels: np.ndarray
    affine: np.ndarray
    timings: dict = field(default_factory=dict)
    header: nib.Nifti1Header | None = None  # the reference image's, for the output maps
    images: dict[str, np.ndarray] = field(default_factory=dict)  # what was loaded (QC report)


class Predictor:
    """Runs a bundle's fold models on patients.

    Args:
        bundle: a :class:`Bundle` or its path.
        device: ``cpu`` or ``cuda``.
        tta: also average over flips along X, Y and Z (test-time augmentation).
        chronic_threshold: rim+ lesions from which a patient counts as chronic active (4 in the
        paper).
        batch_size: patches per forward pass.
        resample: resample images and masks off the first modality's grid onto it.
        anatomy_format: ``auto`` | ``rimnet`` | ``aseg`` (:mod:`rimnet.data.anatomy`).

    Example:
        >>> p = Predictor("bundle.pt")  # doctest: +SKIP
        >>> images = {"phase": "phase.nii.gz", "flair": "flair.nii.gz"}
        >>> r = p.predict_files("pat01", images, "lesions.nii.gz")  # doctest: +SKIP
        >>> r.summary["rim_pos_count"]  # doctest: +SKIP
        3
    """

    def __init__(
        self,
        bundle: Bundle | str | Path,
        device: str = "cpu",
        tta: bool = False,
        chronic_threshold: int = 4,
        batch_size: int = 64,
        resample: bool = False,
        anatomy_format: str = "auto",
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.device = torch.device(device)
        self.nets = self.bundle.networks(self.device)
        self.tta, self.chronic_threshold, self.batch_size = tta, chronic_threshold, batch_size
        self.resample, self.anatomy_format = resample, anatomy_format

    def check_modalities(self, given: Sequence[str], where: str) -> None:
        missing = [m for m in self.bundle.modalities if m not in given]
        if missing:
            raise BundleError(
                f"{where}: the bundle ({self.bundle.experiment}) needs {self.bundle.modalities}; "
                f"missing {missing}"
            )

    @torch.no_grad()
    def member_probs(self, x: torch.Tensor) -> np.ndarray:
        """(members, N) rim+ probabilities for patches (N, C, P, P, P); TTA averages flips per
        member."""
        flips = [None, 2, 3, 4] if self.tta else [None]
        out = []
        for net in self.nets:
            probs = []
            for i in range(0, len(x), self.batch_size):
                xb = x[i : i + self.batch_size].to(self.device)
                p = torch.stack(
                    [net(xb if d is None else xb.flip(d)).softmax(1)[:, 1] for d in flips]
                ).mean(0)
                probs.append(p.cpu())
            out.append(torch.cat(probs).numpy() if probs else np.zeros(0))
        return np.stack(out)

    def predict_volumes(self, vol: PatientVolumes) -> PatientResult:
        """Candidates, probabilities and decisions for one loaded patient."""
        b = self.bundle
        t = {}
        t0 = time.perf_counter()
        table, comp = extract_candidates(
            vol.masks["lesion_mask"],
            vol.affine,
            b.candidate_rules(),
            anatomy=vol.masks.get("anatomy"),
            air_mask=vol.masks.get("air_mask"),
        )
        t["candidates"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        centres = table[["center_i", "center_j", "center_k"]].to_numpy()
        stack = [vol.images[m] for m in b.modalities]
        patches = [center_crop(extract_patch(stack, c, b.context), b.patch_size) for c in centres]
        x = (
            torch.from_numpy(np.stack(patches))
            if patches
            else torch.zeros((0, len(stack), b.patch_size, b.patch_size, b.patch_size))
        )
        t["patches"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        probs = self.member_probs(x.float())
        t["model"] = time.perf_counter() - t0
        lesions = table.drop(columns=["label", "rater1", "rater2", "consensus_needed"])
        lesions.insert(
            0, "lesion_id", [lesion_id(vol.patient_id, i) for i in table["lesion_index"]]
        )
        lesions.insert(0, "patient_id", vol.patient_id)
        lesions["prob"] = probs.mean(0) if len(table) else []
        lesions["prob_std"] = probs.std(0) if len(table) else []
        lesions["decision"] = np.where(
            lesions["excluded"] != "",
            "excluded",
            np.where(lesions["prob"] >= b.threshold, "rim+", "rim-"),
        )
        n_pos = int((lesions["decision"] == "rim+").sum())
        summary = {
            "patient_id": vol.patient_id,
            "site": vol.site,
            "rim_pos_count": n_pos,
            "candidates": len(lesions),
            "assessed": int((lesions["decision"] != "excluded").sum()),
            "chronic_active": n_pos >= self.chronic_threshold,
            "chronic_threshold": self.chronic_threshold,
            "threshold": b.threshold,
            "threshold_calibrated": b.calibrated,
            "experiment": b.experiment,
            "members": len(self.nets),
            "tta": self.tta,
        }
        return PatientResult(
            vol.patient_id, lesions, summary, comp, vol.affine, t, vol.header, vol.images
        )

    def predict_row(self, row: pd.Series) -> PatientResult:
        t0 = time.perf_counter()
        modalities = list(self.bundle.modalities)
        if "flair" not in modalities and str(row.get("flair", "") or ""):
            modalities.append("flair")  # for the QC report's cards (the paper's Fig. 1)
        vol = load_patient(row, modalities, self.resample, self.anatomy_format)
        load_s = time.perf_counter() - t0
        result = self.predict_volumes(vol)
        result.timings = {"load": load_s, **result.timings}
        return result

    def predict_files(
        self,
        patient_id: str,
        images: dict[str, str | Path],
        lesion_mask: str | Path,
        **masks: str | Path | None,
    ) -> PatientResult:
        """One patient from file paths (``masks`` may give ``anatomy`` and ``air_mask``)."""
        self.check_modalities(list(images), f"patient {patient_id}")
        row = {"patient_id": patient_id, "site": "", "scanner": "", "lesion_mask": str(lesion_mask)}
        row.update({k: str(v) for k, v in images.items()})
        row.update({k: str(v) for k, v in masks.items() if v})
        return self.predict_row(pd.Series(row))


def patient_folder(out_dir: str | Path, patient_id: str) -> Path:
    """``out_dir/<patient_id>``, after checking that the id is safe and the folder stays inside."""
    out_dir = Path(out_dir)
    folder = out_dir / check_patient_id(patient_id)
    if folder.resolve().parent != out_dir.resolve():
        raise OwnershipError(
            f"patient {patient_id}: its folder {folder} would lie outside the output folder "
            f"{out_dir}"
        )
    return folder


def nifti_like(data: np.ndarray, result: PatientResult) -> nib.Nifti1Image:
    """An output map with the input's header (qform/sform codes, units), its own data type and
    no intensity scaling, so viewers overlay it exactly on the patient's images."""
    if result.header is None:
        return nib.Nifti1Image(data, result.affine)
    img = nib.Nifti1Image(data, result.affine, header=result.header)
    img.set_data_dtype(data.dtype)
    img.header.set_slope_inter(1.0, 0.0)
    return img


def write_patient(
    result: PatientResult,
    out_dir: str | Path,
    report: bool = False,
    bundle_name: str = "",
    figures=None,
) -> Path:
    """Write one patient's outputs atomically into ``out_dir/<patient_id>``; returns that folder.

    ``report=True`` adds ``report.html`` (:mod:`rimnet.inference.report`), drawn from
    ``figures`` (:class:`~rimnet.inference.report.PatientFigures`) when given.

    The folder is built beside its final place and moved in when complete; an existing folder
    there is replaced only if rimnet wrote it.
    """
    t0 = time.perf_counter()
    folder = patient_folder(out_dir, result.patient_id)
    codes = np.zeros(result.labels.shape, np.uint8)
    prob = np.zeros(result.labels.shape, np.float32)
    if len(result.lesions):
        lut_code = np.zeros(int(result.labels.max()) + 1, np.uint8)
        lut_prob = np.zeros(int(result.labels.max()) + 1, np.float32)
        idx = result.lesions["lesion_index"].to_numpy()
        lut_code[idx] = [DECISION_CODES[d] for d in result.lesions["decision"]]
        excluded = (result.lesions["decision"] == "excluded").to_numpy()
        lut_prob[idx] = np.where(excluded, 0.0, result.lesions["prob"].to_numpy())
        codes, prob = lut_code[result.labels], lut_prob[result.labels]
    with atomic_dir(
        folder, "patient-predictions", f"patient {result.patient_id}'s output folder"
    ) as tmp:
        result.lesions.to_csv(tmp / "lesions.csv", index=False)
        img = nifti_like(codes, result)
        img.header["descrip"] = b"rimnet: 0 bg, 1 rim-, 2 rim+, 3 excluded"
        nib.save(img, tmp / "candidates.nii.gz")
        prob_img = nifti_like(prob, result)
        prob_img.header["cal_min"], prob_img.header["cal_max"] = 0.0, 1.0  # viewers' window
        nib.save(prob_img, tmp / "probability.nii.gz")
        for name, text in label_tables().items():
            (tmp / name).write_text(text)
        write_json(tmp / "summary.json", result.summary)
        if report:
            from rimnet.inference.report import write_patient_report

            write_patient_report(result, tmp, bundle_name, figures)
    result.timings["write"] = time.perf_counter() - t0
    return folder


def lesion_at(result: PatientResult, point: Sequence[float], mm: bool = False) -> pd.Series | None:
    """The candidate under a point (voxel indices, or mm in the image's world space); None if
    none."""
    p = np.asarray(point, dtype=float)
    if mm:
        p = np.linalg.inv(result.affine) @ np.append(p, 1.0)
        p = p[:3]
    ijk = np.rint(p).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= result.labels.shape):
        raise RimnetError(
            f"point {tuple(point)} ({'mm' if mm else 'voxels'}) lies outside the image of shape "
            f"{result.labels.shape}"
        )
    label = int(result.labels[tuple(ijk)])
    if label == 0:
        return None
    return result.lesions.set_index("lesion_index").loc[label]
