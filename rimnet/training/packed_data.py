"""``PackDataModule``: the training data of K members as one stream of stacked batches.

Each member keeps its own epoch plan: its patients, its datamodule's seeded shuffle and
augmentation variants at its own epoch number. A step stacks the members' next batches into one
``(K, B, C, P, P, P)`` tensor; a member whose epoch is over (or that has stopped) sits the step
out, and a member's last, smaller batch is marked by its size. The patches of every member are held
once (their union), moved to the device with the first batch, and gathered and flipped/shifted
there (the ``batched`` augmentation of :class:`~rimnet.data.datamodule.PatchDataModule`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from rimnet.data.augment import batched_variants
from rimnet.data.cache import PatchCache
from rimnet.data.datamodule import PatchDataModule


class PackDataModule(pl.LightningDataModule):
    """Stacked training batches of the members (objects with ``dm``, ``epoch`` and ``done``).

    Args:
        members: the pack's members, in slot order.
        cache: the patch cache they all train from.
        batch_size: the members' (shared) batch size.

    Example:
        >>> dm = PackDataModule(members, cache, 32)  # doctest: +SKIP
        >>> batch = next(iter(dm.train_dataloader()))  # doctest: +SKIP
    """

    def __init__(self, members: Sequence[Any], cache: PatchCache, batch_size: int) -> None:
        super().__init__()
        self.members, self.batch = list(members), int(batch_size)
        first: PatchDataModule = self.members[0].dm
        self.patch_size, self.channels = first.patch_size, first.channels
        union = np.unique(np.concatenate([m.dm.rows["train"] for m in self.members]))
        self.positions = [np.searchsorted(union, m.dm.rows["train"]) for m in self.members]
        self.patches = torch.from_numpy(np.asarray(cache.patches[union][:, self.channels]))
        self.labels = torch.as_tensor(cache.lesions["label"].to_numpy()[union], dtype=torch.long)
        self._device_store: tuple[torch.Tensor, torch.Tensor] | None = None

    def plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This epoch's (store positions (K, T·B), variants (K, T·B), batch sizes (K, T)) of
        every member still training, each at its own epoch number."""
        k, b = len(self.members), self.batch
        orders = {}
        for i, m in enumerate(self.members):
            if not m.done:
                sampler = m.dm.train_dataloader().sampler
                sampler.set_epoch(m.epoch)
                orders[i] = np.fromiter((j for j, _ in sampler), np.int64, count=len(sampler))
        steps = max((math.ceil(len(o) / b) for o in orders.values()), default=0)
        idx, var = np.zeros((k, steps * b), np.int64), np.zeros((k, steps * b), np.int64)
        sizes = np.zeros((k, steps), np.int64)
        for i, order in orders.items():
            m = self.members[i]
            idx[i, : len(order)] = self.positions[i][order]
            var[i, : len(order)] = m.dm.schedule.variants(order, m.epoch)
            sizes[i] = np.clip(len(order) - np.arange(steps) * b, 0, b)
        return idx, var, sizes

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Steps(self), batch_size=None, collate_fn=_as_is)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Gather and augment the step's patches on the batch's device."""
        device = batch["idx"].device
        if self._device_store is None or self._device_store[0].device != device:
            self._device_store = (self.patches.to(device), self.labels.to(device))
        store, labels = self._device_store
        k, b = batch["idx"].shape
        flat = batch["idx"].reshape(-1)
        x = batched_variants(store[flat], batch["var"].reshape(-1), self.patch_size)
        return {**batch, "x": x.reshape(k, b, *x.shape[1:]), "y": labels[batch["idx"]]}


def _as_is(batch: dict) -> dict:
    """No collation: the step's sizes stay a host array (the loop branches on them)."""
    return batch


class _Steps(IterableDataset):
    """One epoch of stacked steps; the plan is drawn when the epoch starts."""

    def __init__(self, data: PackDataModule) -> None:
        self.data = data

    def __len__(self) -> int:
        b = self.data.batch
        return max(
            (math.ceil(len(m.dm.train_dataloader().sampler) / b) for m in self.data.members),
            default=0,
        )

    def __iter__(self) -> Iterator[dict]:
        idx, var, sizes = self.data.plan()
        b = self.data.batch
        for step in range(sizes.shape[1]):
            cols = slice(step * b, (step + 1) * b)
            yield {
                "idx": torch.from_numpy(idx[:, cols].copy()),
                "var": torch.from_numpy(var[:, cols].copy()),
                "sizes": sizes[:, step].copy(),  # numpy: stays on the host
            }
