"""``RimNetModule``: the LightningModule wrapping RimNet and its ablations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryAveragePrecision

from rimnet.models.registry import CHECKPOINT_KEY, network_config, network_name


class RimNetModule(pl.LightningModule):
    """Softmax cross-entropy + Adam over a RimNet; logs loss, AUROC, AP and accuracy per stage.

    The module reads no data table and writes no file: a test pass collects, per lesion, the
    batch item index and the rim+ probability (:meth:`test_outputs`), and the training routine
    turns them into ``predictions.csv``.

    Args:
        net: the network (a :class:`rimnet.models.RimNet`).
        optimizer: a partial optimizer taking the parameters (Adam at the first rate by default;
            the staircase callback sets the rate every epoch).
        class_weights: ``None`` (plain CE, the paper's choice after offline rebalancing to ~1:1),
            ``"balanced"`` (inverse class frequency of the training set, see
            :meth:`balance_classes`; the authors' code) or two weights for (rim-, rim+).
        channels_last: convert the network to channels-last-3d memory format.
        seed: the run's seed; when set, every training epoch reseeds the random generators from
            (seed, epoch), so a run resumed from its last epoch draws what an uninterrupted one did.
        inference: what inference needs besides the weights (modalities, patch and candidate
            rules, version), stored in every checkpoint under ``"rimnet"`` with the network's
            keyword arguments; plain values, so the checkpoint loads with ``weights_only=True``.

    Example:
        >>> from rimnet.models import RimNet
        >>> module = RimNetModule(RimNet(2, widths=(8, 16, 32)))
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        class_weights: str | Sequence[float] | None = None,
        channels_last: bool = False,
        seed: int | None = None,
        inference: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "inference"])
        self.optimizer = optimizer
        self.inference = dict(inference or {})
        self.net = net.to(memory_format=torch.channels_last_3d) if channels_last else net
        weights = (
            torch.ones(2)
            if class_weights in (None, "balanced")
            else torch.as_tensor(list(class_weights))
        )
        self.register_buffer("ce_weight", weights.float(), persistent=False)
        metrics = MetricCollection(
            {"auroc": BinaryAUROC(), "ap": BinaryAveragePrecision(), "acc": BinaryAccuracy()}
        )
        self.metrics = nn.ModuleDict(
            {f"{s}_metrics": metrics.clone(prefix=f"{s}/") for s in ("train", "val", "test")}
        )
        self._test_items: list[torch.Tensor] = []
        self._test_probs: list[torch.Tensor] = []
        self._updated: set[str] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def balance_classes(self, labels: Sequence[int]) -> None:
        """``class_weights="balanced"``: weight each class by the inverse of its training
        frequency."""
        if self.hparams.class_weights != "balanced":
            return
        labels = np.asarray(labels)
        counts = torch.tensor([(labels == 0).sum(), (labels == 1).sum()], dtype=torch.float).clamp(
            min=1
        )
        self.ce_weight = counts.sum() / (2 * counts)

    def _step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = batch
        logits = self(x.to(self.dtype))  # float32 patches into a float64 run (precision=64)
        loss = F.cross_entropy(logits, y, weight=self.ce_weight.to(logits.device))
        prob = logits.softmax(1)[:, 1]
        self.metrics[f"{stage}_metrics"].update(prob.detach(), y)
        self._updated.add(stage)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=stage != "test",
            batch_size=len(y),
        )
        return loss, prob

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        _, prob = self._step(batch, "test")
        self._test_items.append(batch[2].detach().cpu())
        self._test_probs.append(prob.detach().float().cpu())

    def _epoch_end(self, stage: str) -> None:
        m = self.metrics[f"{stage}_metrics"]
        if stage in self._updated:  # AUROC/AP of a one-class stage are 0 (torchmetrics warns)
            self.log_dict(m.compute(), prog_bar=stage == "val")
        m.reset()
        self._updated.discard(stage)

    def on_train_epoch_start(self) -> None:
        if self.hparams.get("seed") is not None:
            pl.seed_everything(
                (self.hparams.seed + 7919 * (self.current_epoch + 1)) % (2**31 - 1), verbose=False
            )

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_start(self) -> None:
        self._test_items, self._test_probs = [], []

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def test_outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """(item indices into the test set, rim+ probabilities) of the last test pass, in order."""
        if not self._test_items:
            return np.zeros(0, int), np.zeros(0, np.float32)
        return torch.cat(self._test_items).numpy(), torch.cat(self._test_probs).numpy()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            **self.inference,
            "network": network_name(type(self.net)),
            "model": network_config(self.net, self.inference.get("model", {})),
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            return torch.optim.Adam(self.parameters(), lr=1e-4)
        return self.optimizer(self.parameters())
