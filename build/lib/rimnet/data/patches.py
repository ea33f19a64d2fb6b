"""Lesion-centred patches (§2.4) and the offline augmentation of §2.6.

A stored patch is a *context* cube of side ``context = patch + 2 * max_shift`` (32 for the paper's
28³ patch and ±2-voxel shift) centred on the rounded centre of mass, so that every online shift
crops real tissue. Voxels outside the volume are zero-filled in image space (0 rad of phase, no
signal in T2* and FLAIR) before normalisation. Each modality is then linearly normalised to
[-1, 1] over the stored cube.
"""

from __future__ import annotations

import numpy as np
import torch

from rimnet.data.contract import center_crop

# 90/180/270° about each axis: rotations in the plane of the two other axes.
ROTATIONS: list[tuple[str, tuple[int, int], int]] = [
    (f"rot_{axis}{90 * k}", plane, k)
    for axis, plane in (("x", (1, 2)), ("y", (0, 2)), ("z", (0, 1)))
    for k in (1, 2, 3)
]


def rotate(patch: np.ndarray, plane: tuple[int, int], k: int) -> np.ndarray:
    """Exact rotation of a (C, S, S, S) cube by ``k`` × 90° in spatial ``plane`` about its
    centre."""
    return np.ascontiguousarray(np.rot90(patch, k, axes=(plane[0] + 1, plane[1] + 1)))


class ElasticDeformer:
    """Elastic deformations with MONAI's ``Rand3DElastic``, seeded for reproducibility.

    Deforms a larger context cube and crops its centre, so the stored patch has no border
    artefacts from the zero padding that the deformation pulls in at the edges.

    Example:
        >>> d = ElasticDeformer(seed=0)
        >>> d(np.random.rand(3, 44, 44, 44).astype(np.float32), out_size=32).shape
        (3, 32, 32, 32)
    """

    def __init__(
        self,
        seed: int = 0,
        sigma_range: tuple[float, float] = (5.0, 7.0),
        magnitude_range: tuple[float, float] = (80.0, 160.0),
    ) -> None:
        from monai.transforms import Rand3DElastic

        self.transform = Rand3DElastic(
            sigma_range=sigma_range,
            magnitude_range=magnitude_range,
            prob=1.0,
            mode="bilinear",
            padding_mode="zeros",
        )
        self.transform.set_random_state(seed=seed)

    def __call__(self, big: np.ndarray, out_size: int) -> np.ndarray:
        with torch.no_grad():
            out = self.transform(torch.from_numpy(np.ascontiguousarray(big)))
        return center_crop(np.asarray(out, dtype=np.float32), out_size)
