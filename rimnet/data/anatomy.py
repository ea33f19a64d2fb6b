"""Anatomy label maps: the framework's own codes, or FreeSurfer's aseg / aparc+aseg labels.

The location analysis (§2.8) needs ventricles, cortex, white matter, deep grey matter, brainstem,
cerebellum and CSF. An ``anatomy`` map may hold the framework's codes
(:data:`rimnet.data.contract.ANATOMY_NAMES`, 0-7) or FreeSurfer labels (``aseg.mgz``,
``aparc+aseg.mgz``, ``wmparc.mgz`` converted to NIfTI); :func:`to_rimnet_codes` recognises which
by the labels present (or is told) and maps FreeSurfer labels by :data:`FREESURFER_TO_RIMNET`.
A map that is neither is an error, so an aseg can no longer be misread as framework codes.
"""

from __future__ import annotations

import numpy as np

from rimnet.data.contract import (
    ANATOMY_NAMES,
    BRAINSTEM,
    CEREBELLUM,
    CORTEX,
    CSF,
    DEEP_GM,
    OUTSIDE,
    VENTRICLE,
    WM,
)
from rimnet.errors import RimnetError

FORMATS = ("auto", "rimnet", "aseg")


class AnatomyError(RimnetError):
    """An anatomy map that is neither the framework's codes nor FreeSurfer labels."""


def _labels(pairs: dict[int, tuple[int, ...] | range]) -> dict[int, int]:
    return {label: code for code, labels in pairs.items() for label in labels}


# FreeSurfer label (FreeSurferColorLUT.txt) -> framework code. Cortical parcellations (aparc,
# a2009s) and white-matter parcellations (wmparc) map to cortex and white matter.
FREESURFER_TO_RIMNET: dict[int, int] = _labels(
    {
        OUTSIDE: (0,),
        CSF: (24, 30, 62),  # CSF; vessels (left/right) are not parenchyma
        CORTEX: (
            3,
            42,
            *range(1000, 1036),
            *range(2000, 2036),
            *range(11100, 11176),
            *range(12100, 12176),
        ),  # fmt: skip
        WM: (
            2,
            41,
            77,
            78,
            79,
            80,
            81,
            82,
            85,
            *range(251, 256),
            5001,
            5002,
            *range(3000, 3036),
            *range(4000, 4036),
        ),  # fmt: skip
        VENTRICLE: (4, 5, 14, 15, 31, 43, 44, 63, 72),  # lateral, inferior lateral, 3rd, 4th,
        # choroid plexus (inside the ventricles), 5th
        DEEP_GM: (10, 11, 12, 13, 17, 18, 26, 28, 49, 50, 51, 52, 53, 54, 58, 60),  # thalamus,
        # caudate, putamen, pallidum, hippocampus, amygdala, accumbens, ventral DC
        BRAINSTEM: (16,),
        CEREBELLUM: (7, 8, 46, 47),  # cerebellar white matter and cortex
    }
)
# Labels only FreeSurfer uses (any of them present => the map is an aseg).
_FREESURFER_ONLY = set(FREESURFER_TO_RIMNET) - set(ANATOMY_NAMES)


def detect_format(labels: np.ndarray) -> str:
    """``"rimnet"`` if every label is a framework code (0-7), ``"aseg"`` if the map holds
    FreeSurfer-only labels and nothing else unknown; raises :class:`AnatomyError` otherwise.

    Example:
        >>> detect_format(np.array([0, 2, 3, 41, 42, 4, 43, 16]))
        'aseg'
        >>> detect_format(np.array([0, 1, 2, 3, 4]))
        'rimnet'
    """
    present = set(np.unique(labels).astype(int).tolist())
    if present <= set(ANATOMY_NAMES):
        return "rimnet"
    unknown = sorted(present - set(FREESURFER_TO_RIMNET))
    if present & _FREESURFER_ONLY and not unknown:
        return "aseg"
    raise AnatomyError(
        f"labels {unknown[:8]} are neither the framework's anatomy codes (0-7) nor FreeSurfer "
        f"aseg/aparc+aseg labels"
    )


def to_rimnet_codes(labels: np.ndarray, fmt: str = "auto", where: str = "") -> np.ndarray:
    """The framework's codes (uint8) of an anatomy map of format ``fmt`` (auto | rimnet | aseg).

    Args:
        labels: integer label map.
        fmt: ``auto`` detects the format by the labels present (:func:`detect_format`).
        where: what to name in errors, e.g. ``"patient p1: anatomy file a.nii.gz"``.

    Example:
        >>> to_rimnet_codes(np.array([0, 2, 3, 4, 10, 16, 8, 24, 1005])).tolist()
        [0, 3, 2, 4, 5, 6, 7, 1, 2]
    """
    prefix = f"{where}: " if where else ""
    if fmt not in FORMATS:
        raise AnatomyError(f"{prefix}anatomy_format={fmt!r}; choose one of {list(FORMATS)}")
    try:
        found = detect_format(labels)
    except AnatomyError as exc:
        raise AnatomyError(f"{prefix}{exc}") from None
    if fmt == "rimnet" and found != "rimnet":
        raise AnatomyError(
            f"{prefix}anatomy_format=rimnet but the map holds labels above 7 (a FreeSurfer aseg? "
            f"use anatomy_format=aseg or auto)"
        )
    if fmt == "aseg" or found == "aseg":
        lut = np.zeros(max(FREESURFER_TO_RIMNET) + 1, np.uint8)
        for label, code in FREESURFER_TO_RIMNET.items():
            lut[label] = code
        unknown = sorted(set(np.unique(labels).astype(int).tolist()) - set(FREESURFER_TO_RIMNET))
        if unknown:
            raise AnatomyError(f"{prefix}labels {unknown[:8]} are not in the FreeSurfer table")
        return lut[labels.astype(np.int64)]
    return labels.astype(np.uint8)


def rimnet_to_aseg(codes: np.ndarray, right: np.ndarray) -> np.ndarray:
    """A FreeSurfer-style aseg of a framework-code map (left/right labels by ``right``), as a
    synthetic cohort writes it; :func:`to_rimnet_codes` maps it back exactly."""
    left_right = {
        OUTSIDE: (0, 0), CSF: (24, 24), CORTEX: (3, 42), WM: (2, 41), VENTRICLE: (4, 43),
        DEEP_GM: (10, 49), BRAINSTEM: (16, 16), CEREBELLUM: (8, 47),
    }  # fmt: skip
    out = np.zeros(codes.shape, np.int16)
    for code, (lh, rh) in left_right.items():
        out[(codes == code) & ~right] = lh
        out[(codes == code) & right] = rh
    return out
