"""``PatchDataModule``: serves subsets of a patch cache chosen by patient ids.

The split decides which patients go where; the datamodule never invents one. Training uses every
stored copy (originals, rotations, elastic deformations) of the training patients' kept candidates;
validation and test use original patches only, centre-cropped, never augmented.

Augmentation modes (``augment``):

- ``batched`` (default, the fast path): the loader yields item indices only; patches are gathered
  from an in-memory tensor and flipped/shifted for the whole batch in ``on_after_batch_transfer``,
  on the batch's device (the store follows the batch to the GPU once). No DataLoader workers needed.
- ``torchio``: the reference path; each sample is augmented by TorchIO in ``__getitem__``.
- ``none``: centre crops only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from rimnet.data.augment import VariantSchedule, batched_variants, torchio_variant
from rimnet.data.cache import PatchCache, load_cache
from rimnet.data.contract import center_crop, usable
from rimnet.errors import ConfigError


class EpochSampler(Sampler):
    """Yields ``(item, epoch)`` pairs: a fresh, seeded shuffle per epoch (``shuffle=False``: in
    order).

    Lightning calls :meth:`set_epoch` before every epoch, so the dataset knows which online variant
    to draw even inside DataLoader workers. With ``batch_size`` (training), an epoch never ends in a
    batch of one patch: batch norm cannot normalise a single value (a network whose last maps are
    1³, such as the DenseNet baseline, fails on it), so that epoch's last item waits for the next.

    Example:
        >>> len(EpochSampler(65, shuffle=True, batch_size=32))
        64
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0, batch_size: int | None = None) -> None:
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0
        self.length = n - 1 if batch_size and n > 1 and n % batch_size == 1 else n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = (
            np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            if self.shuffle
            else np.arange(self.n)
        )
        return ((int(i), self.epoch) for i in order[: self.length])

    def __len__(self) -> int:
        return self.length


class PatchSet(Dataset):
    """Rows ``rows`` of a cache; returns ``(patch or item index, label, item, epoch)``.

    In ``torchio`` mode the patch is augmented here; in ``batched`` mode only the index travels and
    the datamodule gathers and augments on the device; in ``none`` mode the centre crop is returned.
    """

    def __init__(
        self,
        cache: PatchCache,
        rows: np.ndarray,
        channels: list[int],
        patch_size: int,
        mode: str,
        schedule: VariantSchedule | None = None,
    ) -> None:
        self.cache, self.rows, self.channels, self.patch_size, self.mode, self.schedule = (
            cache,
            rows,
            channels,
            patch_size,
            mode,
            schedule,
        )
        self.labels = torch.as_tensor(cache.lesions["label"].to_numpy()[rows], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)

    def patch(self, item: int) -> torch.Tensor:
        return torch.from_numpy(
            np.asarray(self.cache.patches[self.rows[item]][self.channels], dtype=np.float32)
        )

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        item, epoch = key
        if self.mode == "batched":
            x = torch.zeros(0)
        elif self.mode == "torchio":
            x = torchio_variant(
                self.patch(item),
                int(self.schedule.variants(np.array([item]), epoch)[0]),
                self.patch_size,
            )
        else:
            x = center_crop(self.patch(item), self.patch_size).contiguous()
        return x, self.labels[item], item, epoch


class PatchDataModule(pl.LightningDataModule):
    """Train/val/test loaders over a patch cache, selected by patient ids.

    Args:
        cache: a :class:`PatchCache` or the path of a cache folder.
        modalities: channels fed to the network, in order (the first is RimNet's main branch).
        train_ids / val_ids / test_ids: patient ids of each subset (the split's decision).
        batch_size: 32 in the paper.
        augment: ``batched`` | ``torchio`` | ``none`` (training only; val/test are never augmented).
        include_offline: train on the offline-augmented copies too (rotations, elastic).
        offline_rotations: with ``include_offline``, train on the rim+ rotations of the offline
            augmentation (and their elastic copies) too; ``False`` keeps the elastic copies of
            the original patches only, so each lesion counts alike (weight the classes instead).
        rotate: also turn every training patch by a random rotation of the cube (see
            :mod:`rimnet.data.augment`), so that orientation carries no label.
        modality_dropout: share of training patches with one modality, drawn at random, blanked
            (no effect with one modality).
        seed: seed of the shuffles and of the variant permutations.

    Example:
        >>> ids = dict(train_ids=["p1"], val_ids=["p2"], test_ids=["p3"])
        >>> dm = PatchDataModule("cache/", ["phase", "flair"], **ids)  # doctest: +SKIP
    """

    def __init__(
        self,
        cache: PatchCache | str,
        modalities: Sequence[str],
        train_ids: Sequence[str] = (),
        val_ids: Sequence[str] = (),
        test_ids: Sequence[str] = (),
        batch_size: int = 32,
        augment: str = "batched",
        include_offline: bool = True,
        offline_rotations: bool = True,
        rotate: bool = False,
        modality_dropout: float = 0.0,
        num_workers: int = 0,
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if augment not in ("batched", "torchio", "none"):
            raise ConfigError(f"augment must be batched, torchio or none, not {augment!r}")
        self.cache = cache if isinstance(cache, PatchCache) else load_cache(cache)
        self.modalities = list(modalities)
        self.channels = self.cache.channels(self.modalities)
        self.patch_size = int(self.cache.meta["params"]["patch_size"])
        self.batch_size, self.augment, self.num_workers, self.seed = (
            batch_size,
            augment,
            num_workers,
            seed,
        )
        self.channels_last = channels_last
        les = self.cache.lesions
        known = set(self.cache.patients["patient_id"])
        for name, ids in (("train", train_ids), ("val", val_ids), ("test", test_ids)):
            unknown = sorted(set(ids) - known)
            if unknown:
                raise ConfigError(
                    f"{name} patients {unknown[:5]} are not in the cache {self.cache.path}"
                )
        ok = usable(les)
        original = les["augmentation"] == "none"
        if not include_offline:
            kept = original
        elif offline_rotations:
            kept = pd.Series(True, index=les.index)
        else:
            kept = ~les["augmentation"].str.startswith("rot_")
        train_mask = ok & les["patient_id"].isin(list(train_ids)) & kept
        self.rows = {
            "train": np.flatnonzero(train_mask.to_numpy()),
            "val": np.flatnonzero(
                (ok & original & les["patient_id"].isin(list(val_ids))).to_numpy()
            ),
            "test": np.flatnonzero(
                (ok & original & les["patient_id"].isin(list(test_ids))).to_numpy()
            ),
        }
        for name, ids in (("train", train_ids), ("val", val_ids), ("test", test_ids)):
            if len(ids) and not len(self.rows[name]):
                raise ConfigError(
                    f"the {name} patients {list(ids)[:5]} have no usable lesion in "
                    f"{self.cache.path}: "
                    "the cohort is too small for this split (fewer folds, or more patients)"
                )
        if not 0 <= modality_dropout < 1:
            raise ConfigError(f"modality_dropout must be in [0, 1), not {modality_dropout}")
        self.schedule = VariantSchedule(
            len(self.rows["train"]), seed, rotate, modality_dropout, len(self.modalities)
        )
        self._store: torch.Tensor | None = None

    def table(self, stage: str) -> pd.DataFrame:
        """Lesion-table rows of ``stage`` (train/val/test), in loader order for val/test."""
        return self.cache.lesions.iloc[self.rows[stage]].reset_index(drop=True)

    def _loader(self, stage: str) -> DataLoader:
        train = stage == "train"
        mode = self.augment if train else "none"
        ds = PatchSet(
            self.cache,
            self.rows[stage],
            self.channels,
            self.patch_size,
            mode,
            self.schedule if train else None,
        )
        batch = self.batch_size if train else None
        sampler = EpochSampler(len(ds), shuffle=train, seed=self.seed, batch_size=batch)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def store(self, device: torch.device) -> torch.Tensor:
        """The training patches (selected channels) as one tensor on ``device`` (moved once)."""
        if self._store is None or self._store.device != device:
            arr = np.asarray(self.cache.patches[self.rows["train"]][:, self.channels])
            self._store = torch.from_numpy(arr).to(device)
        return self._store

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y, item, epoch = batch
        if x.numel() == 0:  # batched mode: gather + augment on the batch's device
            variants = torch.from_numpy(self.schedule.variants(item.cpu().numpy(), int(epoch[0])))
            x = batched_variants(
                self.store(y.device)[item.to(y.device)], variants, self.patch_size
            ).float()
        x = x.contiguous(
            memory_format=torch.channels_last_3d if self.channels_last else torch.contiguous_format
        )
        return x, y, item
