"""The data contract in one place: what a cohort holds, what a lesion row means, how a patch is cut.

Every stage that reads or writes cohort data uses these names: the synthetic cohort writes them,
the cache and the predictor read them. docs/data-contract.md documents them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

# --- cohort.csv ----------------------------------------------------------------------------------
# The built-in images (what synth and prepare write, and the predict shortcuts). A cohort may carry
# any other image column (qsm, t1w, ...): a config that names it makes it a modality.
MODALITIES = ("phase", "t2star", "flair")
MODALITY_LABELS = {"phase": "phase", "t2star": "T2*", "flair": "FLAIR"}  # display names
MASKS = ("lesion_mask", "rim_mask", "rater1_mask", "rater2_mask", "anatomy", "air_mask")
REQUIRED = ("patient_id", "site", "lesion_mask")
COHORT_COLUMNS = ("patient_id", "site", "scanner", *MODALITIES, *MASKS)
_MODALITY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
LABEL_TOLERANCE = 1e-3  # masks are label maps: integer-valued within this tolerance, and >= 0


def modality_problem(name: object) -> str | None:
    """Why ``name`` cannot name a modality (an image column of cohort.csv), or None.

    Example:
        >>> modality_problem("qsm") is None, modality_problem("lesion_mask")
        (True, "'lesion_mask' is a mask or table column, not an image")
    """
    if not isinstance(name, str) or not _MODALITY_NAME.match(name):
        return f"{name!r} is not a column name (lower-case letters, digits and _)"
    if name in (*REQUIRED, "scanner", *MASKS):
        return f"{name!r} is a mask or table column, not an image"
    return None


def modality_label(name: str) -> str:
    """How tables and figures write a modality: ``T2*`` for ``t2star``, a new name as it is."""
    return MODALITY_LABELS.get(name, name)


def ordered_modalities(names: Iterable[str]) -> list[str]:
    """``names`` with the built-in modalities first, in their order, then the others as given.

    Example:
        >>> ordered_modalities(["qsm", "flair", "phase"])
        ['phase', 'flair', 'qsm']
    """
    names = list(names)
    return [m for m in MODALITIES if m in names] + [m for m in names if m not in MODALITIES]


def modality_rank(name: str) -> int:
    """Sort key of one modality: built-ins by their order, any other after them."""
    return MODALITIES.index(name) if name in MODALITIES else len(MODALITIES)


# --- anatomy label maps (the ``anatomy`` column)
# ---------------------------------------------------
OUTSIDE, CSF, CORTEX, WM, VENTRICLE, DEEP_GM, BRAINSTEM, CEREBELLUM = range(8)
ANATOMY_NAMES = {
    OUTSIDE: "outside",
    CSF: "csf",
    CORTEX: "cortex",
    WM: "white_matter",
    VENTRICLE: "ventricle",
    DEEP_GM: "deep_gm",
    BRAINSTEM: "brainstem",
    CEREBELLUM: "cerebellum",
}

# --- the lesion table (lesions.csv of a cache, one row per stored patch) --------------------------
LESION_COLUMNS = [
    "patient_id", "lesion_id", "site", "scanner", "label", "volume_mm3", "n_voxels",
    "center_i", "center_j", "center_k", "center_x", "center_y", "center_z", "location",
    "excluded", "consensus_needed", "rater1", "rater2", "augmentation", "source_lesion_id",
    "lesion_index",
]  # fmt: skip
# Columns copied into every prediction row (evaluation needs the raters and the location).
PREDICTION_COLUMNS = [
    "lesion_id", "patient_id", "site", "label", "rater1", "rater2", "consensus_needed",
    "location", "volume_mm3", "center_i", "center_j", "center_k",
]  # fmt: skip


def usable(lesions: pd.DataFrame) -> pd.Series:
    """Rows that may be trained or evaluated on: not excluded and with a consensus label.

    Example:
        >>> usable(pd.DataFrame({"excluded": ["", "too_large", ""], "label": [1, 0, -1]})).tolist()
        [True, False, False]
    """
    return (lesions["excluded"] == "") & (lesions["label"] >= 0)


def originals(lesions: pd.DataFrame) -> pd.DataFrame:
    """Usable original (not augmented) lesion rows: what splits are balanced on and tests use."""
    return lesions[(lesions["augmentation"] == "none") & usable(lesions)]


def lesion_id(patient_id: str, index: int) -> str:
    """The id of candidate ``index`` (its component label) of a patient, e.g. ``bas001_L0007``."""
    return f"{patient_id}_L{int(index):04d}"


# --- patches --------------------------------------------------------------------------------------
def context_size(patch_size: int, max_shift: int) -> int:
    """Side of the stored cube: the network's patch plus room for the online shift on each side.

    Example:
        >>> context_size(28, 2)
        32
    """
    return patch_size + 2 * max_shift


def crop_centered(volume: np.ndarray, centre: np.ndarray, size: int) -> np.ndarray:
    """Cube of side ``size`` covering ``[c - size//2, c - size//2 + size)``, zero-filled outside."""
    c = np.rint(centre).astype(int)
    lo = c - size // 2
    out = np.zeros((size,) * 3, dtype=np.float32)
    src = tuple(slice(max(a, 0), min(a + size, n)) for a, n in zip(lo, volume.shape))
    dst = tuple(slice(s.start - a, s.stop - a) for s, a in zip(src, lo))
    if all(s.stop > s.start for s in src):
        out[dst] = volume[src]
    return out


def normalise(patch: np.ndarray) -> np.ndarray:
    """Linear map of each channel of a (C, ...) patch onto [-1, 1]; constant channels become 0."""
    flat = patch.reshape(patch.shape[0], -1)
    lo = flat.min(1).reshape(-1, *([1] * (patch.ndim - 1)))
    hi = flat.max(1).reshape(-1, *([1] * (patch.ndim - 1)))
    span = hi - lo
    scaled = 2 * (patch - lo) / np.where(span > 0, span, 1) - 1
    return np.where(span > 0, scaled, 0).astype(np.float32)


def center_crop(patch: np.ndarray, size: int) -> np.ndarray:
    """Central cube of side ``size`` of a (C, S, S, S) patch."""
    off = (patch.shape[-1] - size) // 2
    return patch[..., off : off + size, off : off + size, off : off + size]


def extract_patch(images: Sequence[np.ndarray], centre: np.ndarray, size: int) -> np.ndarray:
    """THE patch of the contract: a (C, size³) cube of every image, centred on the rounded centre
    of mass, zero-filled outside the volume, each channel normalised to [-1, 1] over the cube.

    The cache stores ``extract_patch(..., context)``; the network sees its central ``patch_size``
    crop (shifted during training); the predictor cuts exactly the same cube.

    Example:
        >>> vol = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
        >>> extract_patch([vol], np.array([5.0, 5.0, 5.0]), 4).shape
        (1, 4, 4, 4)
    """
    return normalise(np.stack([crop_centered(img, centre, size) for img in images]))
