"""Procedural brain anatomy for the synthetic cohort.

The phantom is a scaled-down brain inside a field of view (FOV) given in millimetres, so the two
sites' voxel sizes (0.67 mm and 0.65 mm) yield different grids over the same anatomy. Label codes
(the data contract's codes for ``anatomy`` maps, :mod:`rimnet.data.contract`):

====  ======================
code  structure
====  ======================
0     outside the head / air
1     extra-cerebral CSF
2     cortex (grey matter)
3     white matter
4     ventricles
5     deep grey matter
6     brainstem
7     cerebellum
====  ======================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from rimnet.data.contract import BRAINSTEM, CEREBELLUM, CORTEX, CSF, DEEP_GM, OUTSIDE, VENTRICLE, WM


@dataclass
class Anatomy:
    """A patient's anatomy on its voxel grid.

    Attributes:
        labels: int8 label map (codes in the module docstring).
        air: boolean map of air cavities (outside the brain, source of susceptibility artefacts).
        coords: millimetre coordinates of every voxel, shape (3, *shape), origin at the FOV centre.
        voxel_mm: isotropic voxel size in mm.
    """

    labels: np.ndarray
    air: np.ndarray
    coords: np.ndarray
    voxel_mm: float

    @property
    def brain(self) -> np.ndarray:
        return self.labels >= CORTEX


def grid(fov_mm: tuple[float, float, float], voxel_mm: float) -> np.ndarray:
    """Millimetre coordinates (3, nx, ny, nz) of voxel centres, origin at the FOV centre."""
    shape = [int(round(f / voxel_mm)) for f in fov_mm]
    axes = [(np.arange(n) - (n - 1) / 2.0) * voxel_mm for n in shape]
    return np.stack(np.meshgrid(*axes, indexing="ij")).astype(np.float32)


def _ellipsoid(c: np.ndarray, centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    r2 = sum(((c[d] - centre[d]) / radii[d]) ** 2 for d in range(3))
    return r2 < 1.0


def make_anatomy(
    fov_mm: tuple[float, float, float], voxel_mm: float, rng: np.random.Generator
) -> Anatomy:
    """Draw one patient's anatomy: brain size, gyral folding and ventricle size vary per patient.

    Example:
        >>> a = make_anatomy((64, 72, 52), 0.67, np.random.default_rng(0))
        >>> sorted(np.unique(a.labels).tolist())
        [0, 1, 2, 3, 4, 5, 6, 7]
    """
    c = grid(fov_mm, voxel_mm)
    x, y, z = c
    scale = rng.uniform(0.95, 1.03)
    axes = np.array([29.0, 33.0, 23.0]) * scale
    # Gyral folding: a sum of a few random spherical-harmonic-like ripples on the surface.
    theta = np.arctan2(y, x)
    phi = np.arctan2(z, np.hypot(x, y))
    ripple = np.zeros_like(x)
    for _ in range(4):
        f1, f2 = rng.integers(5, 11, size=2)
        ripple += (
            0.012
            * np.sin(f1 * theta + rng.uniform(0, 6.3))
            * np.cos(f2 * phi + rng.uniform(0, 6.3))
        )
    r = np.sqrt((x / axes[0]) ** 2 + (y / axes[1]) ** 2 + (z / axes[2]) ** 2) + ripple
    brain = r < 1.0
    head = r < 1.1
    depth = ndimage.distance_transform_edt(brain, sampling=voxel_mm)
    labels = np.zeros(x.shape, np.int8)
    labels[head] = CSF
    labels[brain] = WM
    labels[brain & (depth <= rng.uniform(2.2, 2.8))] = CORTEX

    vent = rng.uniform(0.8, 1.4)  # atrophy enlarges the ventricles
    ventricles = np.zeros_like(brain)
    for side in (-1, 1):
        ventricles |= _ellipsoid(c, (side * 4.5 * vent, 2.0, 3.0), (2.6 * vent, 12.0, 4.5 * vent))
    ventricles |= _ellipsoid(c, (0.0, -9.0, 1.0), (6.0 * vent, 3.0, 3.0))
    deep_gm = np.zeros_like(brain)
    for side in (-1, 1):
        deep_gm |= _ellipsoid(c, (side * 12.5, 1.0, -2.0), (3.6, 6.5, 4.5))
    brainstem = _ellipsoid(c, (0.0, -5.0, -17.0), (5.5, 5.5, 10.0))
    cerebellum = np.zeros_like(brain)
    for side in (-1, 1):
        cerebellum |= _ellipsoid(c, (side * 10.0, -22.0, -15.0), (10.0, 8.0, 6.5))
    for mask, code in ((deep_gm, DEEP_GM), (brainstem, BRAINSTEM), (cerebellum, CEREBELLUM)):
        labels[mask & brain & (labels == WM)] = code
    labels[ventricles & brain] = VENTRICLE

    # Air cavity (a frontal sinus below the anterior brain) and the ear canals.
    air = _ellipsoid(c, (0.0, 31.0, -25.0), (13.0, 8.0, 7.0))
    for side in (-1, 1):
        air |= _ellipsoid(c, (side * 30.0, -6.0, -22.0), (5.0, 4.0, 4.0))
    air &= ~head
    labels[air] = OUTSIDE
    return Anatomy(labels=labels, air=air, coords=c, voxel_mm=voxel_mm)
