"""Read and validate a cohort (``cohort.csv`` + NIfTI), with errors that name patient, file and problem.

The data contract is in the README. Every image of a patient must share the 3D-EPI grid (shape and
affine); ``resample=True`` instead resamples mismatched images onto the phase image's grid with
TorchIO (linear for images, nearest neighbour for masks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

MODALITIES = ("phase", "t2star", "flair")
MASKS = ("lesion_mask", "rim_mask", "rater1_mask", "rater2_mask", "anatomy", "air_mask")
REQUIRED = ("patient_id", "site", "lesion_mask")


class CohortError(ValueError):
    """Bad input: the message names the patient, the file and what is wrong."""


@dataclass
class PatientVolumes:
    """One patient's co-registered volumes as arrays on the reference grid."""

    patient_id: str
    site: str
    scanner: str
    affine: np.ndarray
    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]

    @property
    def voxel_mm(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(0))

    @property
    def shape(self) -> tuple[int, ...]:
        return next(iter(self.images.values()) if self.images else iter(self.masks.values())).shape


def read_cohort(csv: str | Path, modalities: tuple[str, ...] | list[str] = MODALITIES, sites: list[str] | None = None) -> pd.DataFrame:
    """Read ``cohort.csv``, check its columns, ids and sites, and make paths absolute.

    Args:
        csv: path to the cohort table; image paths inside are relative to its folder.
        modalities: the image columns that must be present.
        sites: allowed site names (``None`` accepts any).
    """
    csv = Path(csv)
    if not csv.exists():
        raise CohortError(f"cohort file {csv} does not exist")
    df = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = [c for c in (*REQUIRED, *modalities) if c not in df.columns]
    if missing:
        raise CohortError(f"{csv}: missing column(s) {missing}; the data contract is in the README")
    dup = df["patient_id"][df["patient_id"].duplicated()].unique().tolist()
    if dup:
        raise CohortError(f"{csv}: duplicate patient id(s) {dup}")
    if sites is not None:
        bad = df.loc[~df["site"].isin(list(sites)), ["patient_id", "site"]]
        if len(bad):
            first = bad.iloc[0]
            raise CohortError(f"patient {first.patient_id}: unknown site {first.site!r} in {csv} (allowed: {list(sites)})")
    if "scanner" not in df.columns:
        df["scanner"] = ""
    for col in (*modalities, *MASKS):
        if col in df.columns:
            df[col] = [str((csv.parent / p).resolve()) if p else "" for p in df[col]]
    return df


def _load(pid: str, column: str, path: str) -> nib.Nifti1Image:
    p = Path(path)
    if not p.exists():
        raise CohortError(f"patient {pid}: {column} file {p} does not exist")
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise CohortError(f"patient {pid}: {column} file {p} cannot be read as NIfTI ({exc})") from exc
    if len(img.shape) != 3:
        raise CohortError(f"patient {pid}: {column} file {p} is {len(img.shape)}-D with shape {img.shape}; expected a 3-D volume")
    return img


def load_patient(row: pd.Series, modalities: tuple[str, ...] | list[str] = MODALITIES, resample: bool = False) -> PatientVolumes:
    """Load and check one patient's volumes (first modality is the reference grid)."""
    pid = str(row["patient_id"])
    columns = [(c, "image") for c in modalities] + [(m, "mask") for m in MASKS if m in row and row[m]]
    imgs = {c: _load(pid, c, row[c]) for c, _ in columns}
    ref_col = columns[0][0]
    ref = imgs[ref_col]
    for col, kind in columns:
        img = imgs[col]
        if img.shape == ref.shape and np.allclose(img.affine, ref.affine, atol=1e-3):
            continue
        if not resample:
            raise CohortError(
                f"patient {pid}: {col} file {row[col]} has shape {img.shape} and affine\n{np.round(img.affine, 3)}\n"
                f"but {ref_col} has shape {ref.shape} and affine\n{np.round(ref.affine, 3)}; "
                "co-register them in the 3D-EPI space or preprocess with resample=true"
            )
        imgs[col] = _resample_like(img, ref, kind == "mask")
    images, masks = {}, {}
    for col, kind in columns:
        arr = np.asarray(imgs[col].dataobj, dtype=np.float32 if kind == "image" else None)
        if not np.isfinite(arr).all():
            n = int((~np.isfinite(arr)).sum())
            raise CohortError(f"patient {pid}: {col} file {row[col]} has {n} NaN/Inf voxel(s)")
        if kind == "image":
            images[col] = arr
        else:
            masks[col] = np.rint(arr).astype(np.int32)
    return PatientVolumes(pid, str(row["site"]), str(row.get("scanner", "")), ref.affine.copy(), images, masks)


def _resample_like(img: nib.Nifti1Image, ref: nib.Nifti1Image, label: bool) -> nib.Nifti1Image:
    import torch
    import torchio as tio

    cls = tio.LabelMap if label else tio.ScalarImage
    moving = cls(tensor=torch.as_tensor(np.asarray(img.dataobj, np.float32))[None], affine=img.affine)
    target = tio.ScalarImage(tensor=torch.zeros((1, *ref.shape)), affine=ref.affine)
    out = tio.Resample(target)(moving)
    return nib.Nifti1Image(out.data[0].numpy(), ref.affine)
