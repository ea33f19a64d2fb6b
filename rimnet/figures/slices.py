"""Slices through images: the QC report's candidate cards and axial overview, and the
registration checkerboard of ``rimnet prepare``. Views carry orientation letters from the
image's affine (the letter at an edge is the direction the axis points to there)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rimnet.data.contract import ordered_modalities
from rimnet.figures import COLOURS, png, pyplot, save

HALF = 16  # voxels each side of the centre in a card's slices
VIEWS = {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}  # (horizontal, vertical) axes
OPPOSITE = dict(zip("RLAPSI", "LRPAIS"))


def axis_codes(affine: np.ndarray) -> tuple[str, str, str]:
    """The anatomical direction each voxel axis points to (``('R', 'A', 'S')`` for RAS+)."""
    import nibabel as nib

    return tuple(nib.aff2axcodes(affine))


def view(volume: np.ndarray, centre: Sequence[int], name: str, half: int = HALF) -> np.ndarray:
    """A (2·half)² crop of the ``name`` view through ``centre``, zero-filled beyond the borders,
    for ``imshow``: rows run down the vertical axis, so its positive direction is at the top."""
    h, v = VIEWS[name]
    c = [int(x) for x in centre]
    plane = np.zeros((2 * half, 2 * half), volume.dtype)
    through = [slice(None)] * 3
    through[3 - h - v] = min(max(c[3 - h - v], 0), volume.shape[3 - h - v] - 1)
    src, dst = [], []
    for axis in (h, v):
        lo, hi = c[axis] - half, c[axis] + half
        src.append(slice(max(lo, 0), min(hi, volume.shape[axis])))
        dst.append(slice(max(lo, 0) - lo, 2 * half - (hi - min(hi, volume.shape[axis]))))
    through[h], through[v] = src
    plane[dst[0], dst[1]] = volume[tuple(through)]
    return np.flipud(plane.T)


def _full_view(volume: np.ndarray, name: str) -> np.ndarray:
    h, v = VIEWS[name]
    index = [slice(None)] * 3
    index[3 - h - v] = volume.shape[3 - h - v] // 2
    return np.flipud(volume[tuple(index)].T)


def _letters(ax: Any, codes: Sequence[str], name: str, size: float = 7) -> None:
    h, v = VIEWS[name]
    style = {"color": "#ffd700", "fontsize": size, "transform": ax.transAxes, "weight": "bold"}
    ax.text(0.02, 0.5, OPPOSITE[codes[h]], ha="left", va="center", **style)
    ax.text(0.98, 0.5, codes[h], ha="right", va="center", **style)
    ax.text(0.5, 0.98, codes[v], ha="center", va="top", **style)
    ax.text(0.5, 0.02, OPPOSITE[codes[v]], ha="center", va="bottom", **style)


def _window(planes: Sequence[np.ndarray], lo: float = 1, hi: float = 99) -> tuple[float, float]:
    lo, hi = np.percentile(np.concatenate([p.ravel() for p in planes]), [lo, hi])
    return float(lo), float(max(hi, lo + 1e-6))


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], np.uint8)


def qc_card(
    images: dict[str, np.ndarray],
    component: np.ndarray,
    centre: Sequence[int],
    decision: str,
    affine: np.ndarray,
    zoom: int = 3,
) -> bytes:
    """One candidate's card (PNG): rows = modalities (phase, T2*, FLAIR first), columns = axial,
    coronal, sagittal through ``centre``, the lesion outlined one screen pixel thin in the
    decision's colour (so the rim under it stays visible), orientation letters on the first row.

    The panels are one mosaic of ``zoom`` screen pixels per voxel, drawn as a single image (a
    card costs a few milliseconds, and a report has one per candidate)."""
    from scipy import ndimage

    names = ordered_modalities(images)
    side, gap, left, top = 2 * HALF * zoom, 2, 44, 16
    width, height = left + 3 * (side + gap), top + len(names) * (side + gap)
    mosaic = np.zeros((height, width, 3), np.uint8)
    block = np.ones((zoom, zoom), bool)
    edges = []
    for v in VIEWS:
        mask = np.kron(view(component.astype(np.uint8), centre, v) > 0, block)
        edges.append(mask & ~ndimage.binary_erosion(mask))
    for r, name in enumerate(names):
        planes = [view(images[name], centre, v) for v in VIEWS]
        lo, hi = _window(planes)
        for col, (plane, edge) in enumerate(zip(planes, edges)):
            grey = (np.clip((plane - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
            tile = np.repeat(np.kron(grey, np.ones((zoom, zoom), np.uint8))[..., None], 3, 2)
            tile[edge] = _rgb(COLOURS[decision])
            y, x = top + r * (side + gap), left + col * (side + gap)
            mosaic[y : y + side, x : x + side] = tile
    dpi = 100
    fig = pyplot().figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    codes = axis_codes(affine)
    text = {"fontsize": 8, "color": "white"}
    letter = {"fontsize": 7, "color": "#ffd700", "weight": "bold"}
    for col, v in enumerate(VIEWS):
        x0 = left + col * (side + gap)
        ax.text(x0 + side / 2, top / 2, v, ha="center", va="center", **text)
        h, vert = VIEWS[v]  # the letters, on the first row: every row has the same view
        ax.text(x0 + 2, top + side / 2, OPPOSITE[codes[h]], ha="left", va="center", **letter)
        ax.text(x0 + side - 2, top + side / 2, codes[h], ha="right", va="center", **letter)
        ax.text(x0 + side / 2, top + 1, codes[vert], ha="center", va="top", **letter)
        ax.text(x0 + side / 2, top + side - 1, OPPOSITE[codes[vert]], ha="center", va="bottom",
                **letter)  # fmt: skip
    for r, name in enumerate(names):
        ax.text(left / 2, top + r * (side + gap) + side / 2, name, ha="center", va="center",
                rotation=90, **text)  # fmt: skip
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi)
    finally:
        pyplot().close(fig)
    return buf.getvalue()


def qc_overview(
    background: np.ndarray, lesions: Any, affine: np.ndarray, size_in: float = 4.2
) -> bytes:
    """Axial maximum-intensity projection (PNG) with every candidate's centre ringed in its
    decision's colour (ring size grows with volume); ``lesions`` has ``center_i``,
    ``center_j``, ``volume_mm3`` and ``decision``."""
    mip = np.flipud(background.max(axis=2).T)
    lo, hi = np.percentile(mip, [1, 99.5])
    fig, ax = pyplot().subplots(figsize=(size_in, size_in * mip.shape[0] / mip.shape[1]))
    ax.imshow(mip, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-6))
    rows = background.shape[1]
    for decision, group in lesions.groupby("decision"):
        ax.scatter(
            group["center_i"],
            rows - 1 - group["center_j"],
            s=np.clip(group["volume_mm3"] ** (2 / 3) * 0.6, 12, 160),
            facecolors="none",
            edgecolors=COLOURS[decision],
            linewidths=1.4,
            label=decision,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    _letters(ax, axis_codes(affine), "axial", size=9)
    fig.subplots_adjust(0, 0, 1, 1)
    return png(fig, dpi=100)


def checkerboard(
    fixed: np.ndarray, moved: np.ndarray, path: Path, title: str, squares: int = 8
) -> Path:
    """A checkerboard of two co-registered volumes (mid axial, coronal, sagittal; the positive
    direction of each view's vertical axis up), each scaled to its 1st-99th percentile, written
    as a PNG for a quick look at the alignment."""

    def scaled(a: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(a, [1, 99])
        return np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)

    a, b = scaled(fixed), scaled(moved)
    fig, axes = pyplot().subplots(1, 3, figsize=(12, 4.4))
    for ax, name in zip(axes, VIEWS):
        x, y = _full_view(a, name), _full_view(b, name)
        ii, jj = np.indices(x.shape)
        size = max(1, max(x.shape) // squares)
        ax.imshow(np.where(((ii // size) + (jj // size)) % 2 == 0, x, y), cmap="gray")
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, path, dpi=80)


def patch_grid(patches: np.ndarray, titles: Sequence[str], modalities: Sequence[str]) -> bytes:
    """Central axial slices of patches (PNG): one column per patch, one row per modality.

    Args:
        patches: ``(N, modalities, S, S, S)``.
        titles: one caption per patch.
        modalities: the channel names (row labels).
    """
    n, m = len(patches), len(modalities)
    fig, axes = pyplot().subplots(m, n, figsize=(1.5 * n + 0.4, 1.5 * m + 0.5), squeeze=False)
    for c in range(n):
        for r in range(m):
            cube = patches[c][r]
            ax = axes[r, c]
            ax.imshow(np.flipud(cube[:, :, cube.shape[-1] // 2].T), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(modalities[r], fontsize=8)
        axes[0, c].set_title(titles[c], fontsize=7)
    fig.tight_layout()
    return png(fig, dpi=100)
