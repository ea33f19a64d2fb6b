"""Online augmentation of §2.6: flip (none, X, Y or Z), then shift −2/0/+2 voxels along each axis.

4 flips × 3³ shifts = 108 variants. A :class:`VariantSchedule` gives every patch its own random
permutation of the 108 variants and walks it one step per epoch, so a patch never repeats a variant
before all 108 have been used.

Beyond the paper, ``rotate=True`` also turns every training patch, of either class, by one of the 24
rotations of the cube, drawn at random per patch and epoch. The paper's offline augmentation rotates
rim+ patches only (to balance the classes), so without it a patch's orientation says which class it
belongs to: dipole phase patterns and FLAIR anatomy along B0 are upright in every rim- patch and in
every test patch, turned in most rim+ training patches. Turning every patch makes the orientation
carry no label.

``modality_dropout=p`` blanks (sets to 0, the middle of the normalised range) one modality, drawn at
random, of a share ``p`` of the training patches, so that no branch of a multimodal network can
lean on the other modality alone.

A variant index packs all three: ``(108 × 24) × dropped + 108 × rotation + flip/shift variant``,
where ``dropped`` is 0 (every modality kept) or 1 + the blanked channel.

Two implementations produce identical crops:

- :func:`torchio_variant`: the reference, per sample, with TorchIO transforms (``tio.Flip`` and
  ``tio.Crop`` on a ``tio.Subject``);
- :func:`batched_variants`: the fast path, a whole batch at once by index arithmetic on whatever
  device the batch is on.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

FLIPS = (None, 0, 1, 2)  # none, X, Y, Z (spatial axes)
SHIFTS = (-2, 0, 2)
N_VARIANTS = len(FLIPS) * len(SHIFTS) ** 3


N_SHIFT_VARIANTS = len(SHIFTS) ** 3


def _cube_rotations() -> tuple[tuple[tuple[int, int, int], tuple[int, ...]], ...]:
    """The 24 rotations of a cube as (axis permutation, axes then flipped); the identity first."""
    out = []
    for perm in itertools.permutations(range(3)):
        odd = sum(perm[i] > perm[j] for i in range(3) for j in range(i + 1, 3)) % 2
        for flips in itertools.product((False, True), repeat=3):
            if (odd + sum(flips)) % 2 == 0:  # determinant +1: a rotation, not a mirror
                out.append((perm, tuple(a for a in range(3) if flips[a])))
    return tuple(out)


ROTATIONS = _cube_rotations()
N_TURNED = N_VARIANTS * len(ROTATIONS)  # variant indices per dropped-channel code


def split_extras(variants):  # noqa: ANN001, ANN201 (NumPy or torch: the same arithmetic)
    """Variant index → (flip/shift variant 0..107, rotation 0..23, dropped channel + 1 or 0).

    Example:
        >>> split_extras(2 * 2592 + 3 * 108 + 40)
        (40, 3, 2)
    """
    return variants % N_VARIANTS, (variants // N_VARIANTS) % len(ROTATIONS), variants // N_TURNED


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
    flip, steps = split_variant(int(variant) % N_VARIANTS)
    return FLIPS[flip], tuple((s - 1) * max_shift for s in steps)


def rotate(x: torch.Tensor, rotation: int) -> torch.Tensor:
    """Turn patches (..., S, S, S) by rotation ``rotation`` (0..23) of :data:`ROTATIONS`.

    Example:
        >>> x = torch.arange(8.0).reshape(1, 2, 2, 2)
        >>> torch.equal(rotate(x, 0), x)
        True
    """
    perm, flips = ROTATIONS[rotation]
    lead = x.dim() - 3
    x = x.permute(*range(lead), *(lead + a for a in perm))
    return x.flip([lead + a for a in flips]) if flips else x


class VariantSchedule:
    """Per-patch permutations of the 108 variants, walked one step per epoch; with ``rotate``,
    each (patch, epoch) also draws one of the 24 rotations of the cube, and with
    ``modality_dropout`` > 0 whether (and which of ``channels``) modality is blanked.

    Example:
        >>> s = VariantSchedule(n_items=5, seed=0)
        >>> len({int(s.variants(np.array([3]), e)[0]) for e in range(108)})
        108
    """

    def __init__(
        self,
        n_items: int,
        seed: int = 0,
        rotate: bool = False,
        modality_dropout: float = 0.0,
        channels: int = 1,
    ) -> None:
        rng = np.random.default_rng(seed)
        base = np.tile(np.arange(N_VARIANTS, dtype=np.uint8), (n_items, 1))
        self.table = rng.permuted(base, axis=1)
        # A stream of its own: the flip/shift plan is the same with or without rotations.
        self.rotations = (
            np.random.default_rng([seed, 24]).integers(
                len(ROTATIONS), size=base.shape, dtype=np.uint8
            )
            if rotate
            else None
        )
        self.dropped = None
        if modality_dropout > 0 and channels > 1:
            rng = np.random.default_rng([seed, 2])
            which = rng.integers(channels, size=base.shape) + 1
            self.dropped = np.where(rng.random(base.shape) < modality_dropout, which, 0)

    def variants(self, items: np.ndarray, epoch: int) -> np.ndarray:
        """Variant of each item (positions in the training set) at ``epoch``: the flip/shift
        variant, plus 108 × its rotation and 108 × 24 × its dropped-channel code when drawn."""
        items, col = np.asarray(items), epoch % N_VARIANTS
        out = self.table[items, col].astype(np.int64)
        if self.rotations is not None:
            out += N_VARIANTS * self.rotations[items, col].astype(np.int64)
        if self.dropped is not None:
            out += N_TURNED * self.dropped[items, col].astype(np.int64)
        return out


def blank(x: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
    """Set channel ``dropped - 1`` of each patch (B, C, ...) to 0; code 0 keeps every channel."""
    keep = torch.arange(1, x.shape[1] + 1, device=x.device) != dropped.view(-1, 1)
    return x * keep.view(*keep.shape, *([1] * (x.dim() - 2))).to(x.dtype)


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
    crop = tio.Crop(tuple(bounds))(subject)["patch"].data
    _, rotation, dropped = split_extras(int(variant))
    return blank(rotate(crop, rotation)[None], torch.tensor([dropped]))[0].contiguous()


def batched_variants(x: torch.Tensor, variants: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Fast path: apply per-sample variants to a batch (B, C, S, S, S) → (B, C, P, P, P).

    Flip-then-crop of axis ``d`` reads index ``m + s + t`` (no flip) or ``S - 1 - (m + s + t)``
    (flipped) for output position ``t``; one gather does all three axes. Variants past 107 then
    turn their patch (one operation per rotation in the batch) and blank a channel
    (:func:`split_extras`).
    """
    B, S = x.shape[0], x.shape[-1]
    margin = (S - patch_size) // 2
    dev = x.device
    variants = variants.to(dev).long()
    plain, rotations, dropped = split_extras(variants)
    flip, steps = split_variant(plain)
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
    out = out.permute(0, 4, 1, 2, 3)  # a channels-last-3d view: no copy
    if bool((rotations > 0).any()):
        turned = out.clone()
        for r in rotations.unique().tolist():
            rows = rotations == r
            turned[rows] = rotate(out[rows], r)
        out = turned
    return blank(out, dropped) if bool((dropped > 0).any()) else out
