"""Read and validate a cohort (``cohort.csv`` + NIfTI), with errors that name patient, file and
problem.

The data contract is in docs/data-contract.md. Every image of a patient must share the 3D-EPI
grid (shape and affine); ``resample=True`` instead resamples mismatched images onto the phase
image's grid with TorchIO (linear for images, nearest neighbour for masks).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from rimnet.data.anatomy import AnatomyError, to_rimnet_codes
from rimnet.data.contract import LABEL_TOLERANCE, MASKS, MODALITIES, REQUIRED
from rimnet.errors import RimnetError


class CohortError(RimnetError):
    """Bad input: the message names the patient, the file and what is wrong."""


MAX_ID_BYTES = 128  # a folder name, plus rimnet's temporary suffix, stays within 255 bytes


def check_patient_id(pid: object, where: str = "") -> str:
    """Return ``pid`` if it is safe as a folder name, else raise :class:`CohortError`.

    A patient id becomes a folder name and part of every lesion id, so it must be non-empty, not
    ``.`` or ``..``, without a leading dot, path separators or control characters.

    Example:
        >>> check_patient_id("bas001")
        'bas001'
    """
    text = "" if pid is None else str(pid)
    at = f" ({where})" if where else ""
    problem = ""
    if not text.strip():
        problem = "is empty"
    elif text in (".", "..") or text.startswith("."):
        problem = "starts with a dot"
    elif "/" in text or "\\" in text:
        problem = "contains a path separator"
    elif any(unicodedata.category(ch).startswith("C") for ch in text):
        problem = "contains a control character"
    elif text != text.strip():
        problem = "starts or ends with whitespace"
    elif len(text.encode()) > MAX_ID_BYTES:
        problem = f"is {len(text.encode())} bytes long (at most {MAX_ID_BYTES})"
    if problem:
        raise CohortError(
            f"patient id {text!r}{at} {problem}; ids become folder names: use letters, digits, "
            f"'-' or '_'"
        )
    return text


@dataclass
class PatientVolumes:
    """One patient's co-registered volumes as arrays on the reference grid."""

    patient_id: str
    site: str
    scanner: str
    affine: np.ndarray
    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    header: nib.Nifti1Header | None = None  # the reference image's header (output maps copy it)

    @property
    def voxel_mm(self) -> np.ndarray:
        return np.sqrt((self.affine[:3, :3] ** 2).sum(0))


def read_cohort(
    csv: str | Path,
    modalities: tuple[str, ...] | list[str] = MODALITIES,
    sites: list[str] | None = None,
) -> pd.DataFrame:
    """Read ``cohort.csv``, check its columns, ids and sites, and make paths absolute.

    Args:
        csv: path to the cohort table; image paths inside are relative to its folder.
        modalities: the image columns that must be present.
        sites: allowed site names (``None`` accepts any).
    """
    csv = Path(csv)
    if not csv.is_file():
        raise CohortError(
            f"cohort file {csv} does not exist"
            if not csv.exists()
            else f"cohort file {csv} is not a file"
        )
    try:
        df = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CohortError(f"cohort file {csv} cannot be read as CSV ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    df = df.apply(lambda col: col.str.strip())
    missing = [c for c in (*REQUIRED, *modalities) if c not in df.columns]
    if missing:
        raise CohortError(
            f"{csv}: missing column(s) {missing} (found {list(df.columns)}); the data contract is "
            f"in docs/data-contract.md"
        )
    if df.empty:
        raise CohortError(f"cohort file {csv} lists no patient (a header only)")
    for n, pid in enumerate(df["patient_id"]):
        check_patient_id(pid, f"row {n + 2} of {csv}")
    for col in (*REQUIRED, *modalities):
        empty = df.loc[df[col] == "", "patient_id"].tolist()
        if empty:
            raise CohortError(
                f"patient {empty[0]}: the {col} cell of {csv} is empty ({len(empty)} patient(s) "
                f"without {col})"
            )
    dup = df["patient_id"][df["patient_id"].duplicated()].unique().tolist()
    if dup:
        raise CohortError(f"{csv}: duplicate patient id(s) {dup}")
    if sites is not None:
        bad = df.loc[~df["site"].isin(list(sites)), ["patient_id", "site"]]
        if len(bad):
            first = bad.iloc[0]
            raise CohortError(
                f"patient {first.patient_id}: unknown site {first.site!r} in {csv} (allowed: "
                f"{list(sites)})"
            )
    if "scanner" not in df.columns:
        df["scanner"] = ""
    for col in dict.fromkeys((*modalities, *MODALITIES, *MASKS)):  # every image named
        if col in df.columns:
            df[col] = [str((csv.parent / p).resolve()) if p else "" for p in df[col]]
    return df


def cohort_files(csv: str | Path, cohort: pd.DataFrame) -> list[str]:
    """The cohort table and every file it names (the inputs a stage must never write over)."""
    columns = [c for c in cohort.columns if c not in ("patient_id", "site", "scanner")]
    named = (str(v) for c in columns for v in cohort[c] if str(v))
    return [str(csv), *(v for v in named if Path(v).exists())]


def _load(pid: str, column: str, path: str) -> nib.Nifti1Image:
    p = Path(path)
    if not p.exists():
        raise CohortError(f"patient {pid}: {column} file {p} does not exist")
    try:
        img = nib.load(str(p))
    except Exception as exc:  # nibabel raises several types for corrupt files
        raise CohortError(
            f"patient {pid}: {column} file {p} cannot be read as NIfTI ({exc})"
        ) from exc
    if len(img.shape) != 3:
        raise CohortError(
            f"patient {pid}: {column} file {p} is {len(img.shape)}-D with shape {img.shape}; "
            f"expected a 3-D volume"
        )
    return img


def _read_array(pid: str, column: str, path: str, img: nib.Nifti1Image, kind: str) -> np.ndarray:
    try:
        arr = np.asarray(img.dataobj, dtype=np.float32 if kind == "image" else np.float64)
    except Exception as exc:  # truncated gzip (EOFError), short data (OSError), zlib errors...
        raise CohortError(
            f"patient {pid}: {column} file {path} is damaged or truncated ({type(exc).__name__}: "
            f"{exc})"
        ) from exc
    if not np.isfinite(arr).all():
        n = int((~np.isfinite(arr)).sum())
        raise CohortError(f"patient {pid}: {column} file {path} has {n} NaN/Inf voxel(s)")
    return arr


LABEL_MAX = 2**31 - 1  # labels are stored as int32


def check_labels(pid: str, column: str, path: str, arr: np.ndarray) -> np.ndarray:
    """Label masks must be integer-valued (within 1e-3) and >= 0; returns them as int32.

    Example:
        >>> check_labels("p1", "lesion_mask", "m.nii.gz", np.array([0.0, 1.0, 2.0])).tolist()
        [0, 1, 2]
    """
    rounded = np.rint(arr)
    off = np.abs(arr - rounded) > LABEL_TOLERANCE
    if off.any():
        vals = np.unique(arr[off])[:5].round(4).tolist()
        raise CohortError(
            f"patient {pid}: {column} file {path} is not a label map: {int(off.sum())} voxel(s) "
            f"hold "
            f"non-integer values such as {vals} (give 0 = background and integer labels, no "
            f"interpolated masks)"
        )
    if (rounded < 0).any():
        vals = np.unique(rounded[rounded < 0])[:5].astype(int).tolist()
        raise CohortError(
            f"patient {pid}: {column} file {path} has negative label(s) {vals} "
            f"in {int((rounded < 0).sum())} voxel(s); labels must be 0 (background) or positive"
        )
    if rounded.size and rounded.max() > LABEL_MAX:
        raise CohortError(
            f"patient {pid}: {column} file {path} has label {int(rounded.max())}, above the "
            f"largest label rimnet reads ({LABEL_MAX}); renumber the labels from 1"
        )
    return rounded.astype(np.int32)


def load_patient(
    row: pd.Series,
    modalities: tuple[str, ...] | list[str] = MODALITIES,
    resample: bool = False,
    anatomy_format: str = "auto",
) -> PatientVolumes:
    """Load and check one patient's volumes (first modality is the reference grid).

    Args:
        row: one row of :func:`read_cohort`.
        modalities: the image columns to load, the first being the reference grid.
        resample: resample images and masks on another grid onto the reference (else an error).
        anatomy_format: ``auto`` | ``rimnet`` | ``aseg`` (FreeSurfer labels are mapped to the
            framework's codes, :mod:`rimnet.data.anatomy`).
    """
    pid = check_patient_id(row["patient_id"])
    for col in ("lesion_mask", *modalities):
        if not str(row.get(col, "") or ""):
            raise CohortError(f"patient {pid}: no {col} file given (the {col} entry is empty)")
    columns = [(c, "image") for c in modalities] + [
        (m, "mask") for m in MASKS if m in row and row[m]
    ]
    imgs = {c: _load(pid, c, row[c]) for c, _ in columns}
    ref_col = columns[0][0]
    ref = imgs[ref_col]
    for col, kind in columns:
        img = imgs[col]
        if img.shape == ref.shape and np.allclose(img.affine, ref.affine, atol=1e-3):
            continue
        if not resample:
            raise CohortError(
                f"patient {pid}: {col} file {row[col]} has shape {img.shape} and "
                f"affine\n{np.round(img.affine, 3)}\n"
                f"but {ref_col} has shape {ref.shape} and affine\n{np.round(ref.affine, 3)}; "
                "co-register them in the 3D-EPI space, or let rimnet resample them onto it "
                "(preprocess: params.resample=true; predict: --resample)"
            )
        imgs[col] = _resample_like(img, ref, kind == "mask")
    images, masks = {}, {}
    for col, kind in columns:
        arr = _read_array(pid, col, row[col], imgs[col], kind)
        if kind == "image":
            images[col] = arr
        else:
            masks[col] = check_labels(pid, col, row[col], arr)
    if "anatomy" in masks:
        where = f"patient {pid}: anatomy file {row['anatomy']}"
        try:
            masks["anatomy"] = to_rimnet_codes(masks["anatomy"], anatomy_format, where)
        except AnatomyError as exc:
            raise CohortError(str(exc)) from None
    header = nib.Nifti1Header.from_header(ref.header)
    return PatientVolumes(
        pid, str(row["site"]), str(row.get("scanner", "")), ref.affine.copy(), images, masks, header
    )


def _resample_like(img: nib.Nifti1Image, ref: nib.Nifti1Image, label: bool) -> nib.Nifti1Image:
    import torch
    import torchio as tio

    cls = tio.LabelMap if label else tio.ScalarImage
    moving = cls(
        tensor=torch.as_tensor(np.asarray(img.dataobj, np.float32))[None], affine=img.affine
    )
    target = tio.ScalarImage(tensor=torch.zeros((1, *ref.shape)), affine=ref.affine)
    out = tio.Resample(target)(moving)
    return nib.Nifti1Image(out.data[0].numpy(), ref.affine)
