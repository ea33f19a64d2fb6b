"""Lesion candidates (§2.3–2.4): connected components, size rule, labels, location, exclusions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from rimnet.data.contract import BRAINSTEM, CEREBELLUM, CORTEX, DEEP_GM, VENTRICLE

# 6-connectivity: faces only (the paper's neighbourhood).
CONNECTIVITY_6 = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class CandidateRules:
    """Parameters of the candidate rules (``rules`` of ``conf/patches/paper.yaml``, which holds
    the paper's values; :meth:`paper` reads them).

    Attributes:
        min_volume_mm3: components below this volume are recorded as ``below_min_volume``.
        max_voxels: components above this voxel count are excluded (``too_large``).
        max_rim_voxels_in_patch: rim- candidates whose patch holds more rim+ voxels are excluded.
        patch_size: side of the patch used for the rim+-in-patch rule.
        periventricular_mm / juxtacortical_mm: dilation of ventricles / cortex for the location
        rule.
    """

    min_volume_mm3: float
    max_voxels: int
    max_rim_voxels_in_patch: int
    patch_size: int
    periventricular_mm: float
    juxtacortical_mm: float

    @classmethod
    def paper(cls, **overrides: Any) -> CandidateRules:
        """The paper's rules, as ``conf/patches/paper.yaml`` sets them, with ``overrides``.

        Example:
            >>> CandidateRules.paper(min_volume_mm3=0).max_voxels
            10000
        """
        from rimnet.config import paper_patches

        return cls(**{**paper_patches()["rules"], **overrides})


def components(lesion_mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the lesion mask (binary or labels) into 6-connected components."""
    return ndimage.label(lesion_mask > 0, structure=CONNECTIVITY_6)


def _overlap_label(
    instances: np.ndarray | None, sl: tuple[slice, ...], comp: np.ndarray
) -> int | None:
    if instances is None:
        return None
    return int((instances[sl][comp] > 0).any())


def _location(anatomy: np.ndarray | None, regions: dict[str, np.ndarray] | None, sl, comp) -> str:
    """Location class: periventricular (any overlap with dilated ventricles), juxtacortical (≥ 50 %
    in dilated cortex), other (≥ 50 % in deep GM, brainstem or cerebellum), else deep WM."""
    if anatomy is None or regions is None:
        return ""
    if regions["periventricular"][sl][comp].any():
        return "periventricular"
    if regions["juxtacortical"][sl][comp].mean() >= 0.5:
        return "juxtacortical"
    labs = anatomy[sl][comp]
    if max(np.mean(labs == code) for code in (DEEP_GM, BRAINSTEM, CEREBELLUM)) >= 0.5:
        return "other"
    return "deep_wm"


def rim_instances_outside(lesion_mask: np.ndarray, rim_mask: np.ndarray) -> tuple[int, int]:
    """Rim+ annotations that touch no lesion: ``(instances, voxels)``.

    An instance is a label of ``rim_mask`` (an instance map), or a 6-connected component when the
    mask is binary. Experts draw the rim at the lesion edge, so single voxels outside the automated
    segmentation are normal; a whole annotation away from every lesion is not (wrong space, wrong
    file, or a lesion the segmentation missed), and it would silently leave every candidate rim-.

    Example:
        >>> les = np.zeros((9, 9, 9), np.uint8); les[1:3, 1:3, 1:3] = 1
        >>> rim = np.zeros_like(les); rim[6:8, 6:8, 6:8] = 1
        >>> rim_instances_outside(les, rim)
        (1, 8)
    """
    rim = np.asarray(rim_mask)
    instances = rim if rim.max(initial=0) > 1 else components(rim)[0]
    inside = np.unique(instances[(lesion_mask > 0) & (instances > 0)])
    outside = (instances > 0) & ~np.isin(instances, inside)
    return int(len(np.setdiff1d(np.unique(instances[outside]), [0]))), int(outside.sum())


def dilate_mm(mask: np.ndarray, radius_mm: float, voxel_mm: float | np.ndarray) -> np.ndarray:
    """Dilate a mask by a physical radius (Euclidean, voxel-size aware)."""
    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask, sampling=voxel_mm) <= radius_mm


def location_regions(
    anatomy: np.ndarray, voxel_mm: np.ndarray, rules: CandidateRules
) -> dict[str, np.ndarray]:
    """Dilated ventricles and cortex used by the location rule."""
    return {
        "periventricular": dilate_mm(anatomy == VENTRICLE, rules.periventricular_mm, voxel_mm),
        "juxtacortical": dilate_mm(anatomy == CORTEX, rules.juxtacortical_mm, voxel_mm),
    }


def _geometry(comp: np.ndarray, com: np.ndarray, affine: np.ndarray, voxel_mm: np.ndarray) -> dict:
    """Size and centre of mass (voxels and mm) of one component."""
    nvox = int(comp.sum())
    mm = affine[:3, :3] @ com + affine[:3, 3]
    return {
        "n_voxels": nvox,
        "volume_mm3": nvox * float(np.prod(voxel_mm)),
        "center_i": com[0],
        "center_j": com[1],
        "center_k": com[2],
        "center_x": mm[0],
        "center_y": mm[1],
        "center_z": mm[2],
    }


def _exclusion(
    row: dict,
    sl: tuple[slice, ...],
    comp: np.ndarray,
    com: np.ndarray,
    rules: CandidateRules,
    air_mask: np.ndarray | None,
    rim_any: np.ndarray | None,
) -> str:
    """The first exclusion rule (§2.3-2.4) that applies to a candidate, or ``""``."""
    if row["volume_mm3"] < rules.min_volume_mm3:
        return "below_min_volume"
    if row["n_voxels"] > rules.max_voxels:
        return "too_large"
    if air_mask is not None and (air_mask[sl][comp] > 0).any():
        return "air_artefact"
    if row["label"] == 0 and rim_any is not None:
        half = rules.patch_size // 2
        box = tuple(slice(max(ci - half, 0), max(ci + half, 0)) for ci in np.rint(com).astype(int))
        if int(rim_any[box].sum()) > rules.max_rim_voxels_in_patch:
            return "rim_plus_in_patch"
    return ""


def extract_candidates(
    lesion_mask: np.ndarray,
    affine: np.ndarray,
    rules: CandidateRules | None = None,
    rim_mask: np.ndarray | None = None,
    rater1_mask: np.ndarray | None = None,
    rater2_mask: np.ndarray | None = None,
    anatomy: np.ndarray | None = None,
    air_mask: np.ndarray | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per 6-connected component, plus the component label map (``rules``: the paper's
    when not given).

    Columns: ``lesion_index`` (component label), ``n_voxels``, ``volume_mm3``, ``center_i/j/k``
    (centre of mass, voxels), ``center_x/y/z`` (mm, through ``affine``), ``label`` (consensus rim+,
    -1 when no ``rim_mask``), ``rater1``/``rater2`` (-1 when absent), ``consensus_needed``,
    ``location`` and ``excluded`` (empty or the reason: ``below_min_volume``, ``too_large``,
    ``air_artefact``, ``rim_plus_in_patch``; the first that applies).

    Example:
        >>> m = np.zeros((20, 20, 20), np.uint8); m[5:9, 5:9, 5:9] = 1
        >>> df, labels = extract_candidates(m, np.eye(4))
        >>> df[["n_voxels", "volume_mm3", "excluded"]].values.tolist()
        [[64, 64.0, '']]
    """
    rules = rules or CandidateRules.paper()
    voxel_mm = np.sqrt((affine[:3, :3] ** 2).sum(0))
    labels, _ = components(lesion_mask)
    regions = location_regions(anatomy, voxel_mm, rules) if anatomy is not None else None
    rim_any = rim_mask > 0 if rim_mask is not None else None
    rows = []
    for idx, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        comp = labels[sl] == idx
        com = np.array(ndimage.center_of_mass(comp)) + [s.start for s in sl]
        row = {"lesion_index": idx, **_geometry(comp, com, affine, voxel_mm)}
        label = _overlap_label(rim_mask, sl, comp)
        r1, r2 = _overlap_label(rater1_mask, sl, comp), _overlap_label(rater2_mask, sl, comp)
        row.update(
            {
                "label": -1 if label is None else label,
                "rater1": -1 if r1 is None else r1,
                "rater2": -1 if r2 is None else r2,
                "consensus_needed": bool(r1 is not None and r2 is not None and r1 != r2),
                "location": _location(anatomy, regions, sl, comp),
            }
        )
        row["excluded"] = _exclusion(row, sl, comp, com, rules, air_mask, rim_any)
        rows.append(row)
    cols = [
        "lesion_index",
        "n_voxels",
        "volume_mm3",
        "center_i",
        "center_j",
        "center_k",
        "center_x",
        "center_y",
        "center_z",
        "label",
        "rater1",
        "rater2",
        "consensus_needed",
        "location",
        "excluded",
    ]
    return pd.DataFrame(rows, columns=cols), labels
