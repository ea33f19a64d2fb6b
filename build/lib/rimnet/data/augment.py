"""Online augmentation of §2.6: flip (none, X, Y or Z), then shift −2/0/+2 voxels along each axis.

4 flips × 3³ shifts = 108 variants. A :class:`VariantSchedule` gives every patch its own random
permutation of the 108 variants and walks it one step per epoch, so a patch never repeats a variant
before all 108 have been used. Two implementations produce identical crops:

- :func:`torchio_variant`: the reference, per sample, with TorchIO transforms (``tio.Flip`` and
  ``tio.Crop`` on a ``tio.Subject``);
- :func:`batched_variants`: the fast path, a whole batch at once by index arithmetic on whatever
  device the batch is on.
"""

from __future__ import annotations

import numpy as np
import torch

FLIPS = (None, 0, 1, 2)  # none, X, Y, Z (spatial axes)
SHIFTS = (-2, 0, 2)
N_VARIANTS = len(FLIPS) * len(SHIFTS) ** 3


N_SHIFT_VARIANTS = len(SHIFTS) ** 3


def split_variant(variant):  # noqa: ANN001, ANN201 (int, NumPy or torch: the same arithmetic)
    """Variant index → (flip index into :data:`FLIPS`, shift steps (0, 1, 2) along X, Y, Z).

    Example:
        >>> split_variant(40)
        (1, (1, 1, 1))
    """
    n = len(SHIFTS)
    flip, rest = variant // N_SHIFT_VARIANTS, variant % N_SHIFT_VARIANTS
    return flip, (rest // (n * n), (rest // n) % n, rest % n)


def decode(variant: int, max_shift: int = 2) -> tuple[int | None, tuple[int, int, int]]:
    """Variant index (0..107) → (flip axis or None, (sx, sy, sz)) with shifts in {-m, 0, m}."""
    flip, steps = split_variant(int(variant))
    return FLIPS[flip], tuple((s - 1) * max_shift for s in steps)


class VariantSchedule:
    """Per-patch permutations of the 108 variants, walked one step per epoch.

    Example:
        >>> s = VariantSchedule(n_items=5, seed=0)
        >>> len({int(s.variants(np.array([3]), e)[0]) for e in range(108)})
        108
    """

    def __init__(self, n_items: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        base = np.tile(np.arange(N_VARIANTS, dtype=np.uint8), (n_items, 1))
        self.table = rng.permuted(base, axis=1)

    def variants(self, items: np.ndarray, epoch: int) -> np.ndarray:
        """Variant of each item (positions in the training set) at ``epoch``."""
        return self.table[np.asarray(items), epoch % N_VARIANTS]


def torchio_variant(patch: torch.Tensor, variant: int, patch_size: int) -> torch.Tensor:
    """Reference: apply one variant to a (C, S, S, S) context patch with TorchIO; returns (C, P, P,
    P)."""
    import torchio as tio

    margin = (patch.shape[-1] - patch_size) // 2
    flip, shifts = decode(variant, margin)
    subject = tio.Subject(patch=tio.ScalarImage(tensor=patch))
    if flip is not None:
        subject = tio.Flip(axes=(flip,))(subject)
    bounds = []
    for s in shifts:
        bounds += [margin + s, margin - s]
    return tio.Crop(tuple(bounds))(subject)["patch"].data


def batched_variants(x: torch.Tensor, variants: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Fast path: apply per-sample variants to a batch (B, C, S, S, S) → (B, C, P, P, P).

    Flip-then-crop of axis ``d`` reads index ``m + s + t`` (no flip) or ``S - 1 - (m + s + t)``
    (flipped) for output position ``t``; one gather does all three axes.
    """
    B, S = x.shape[0], x.shape[-1]
    margin = (S - patch_size) // 2
    dev = x.device
    flip, steps = split_variant(variants.to(dev).long())
    steps = torch.stack(steps, dim=1)  # (B, 3)
    shift = (steps - 1) * margin
    t = torch.arange(patch_size, device=dev)
    idx = []
    for d in range(3):
        pos = margin + shift[:, d : d + 1] + t  # (B, P)
        flipped = (flip == d + 1).unsqueeze(1)
        idx.append(torch.where(flipped, S - 1 - pos, pos))
    b = torch.arange(B, device=dev).view(B, 1, 1, 1)
    out = x[
        b, :, idx[0].view(B, -1, 1, 1), idx[1].view(B, 1, -1, 1), idx[2].view(B, 1, 1, -1)
    ]  # (B, P, P, P, C)
    return out.permute(0, 4, 1, 2, 3)  # a channels-last-3d view: no copy
