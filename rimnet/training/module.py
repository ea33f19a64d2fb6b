"""``RimNetModule``: the LightningModule wrapping RimNet and its ablations."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryAveragePrecision

from rimnet.errors import ConfigError
from rimnet.models.registry import CHECKPOINT_KEY, network_config, network_name

log = logging.getLogger(__name__)
# compile="auto": the fewest planned training steps for which compiling pays on a CPU. Measured
# on RimNet 8/16/32, phase + FLAIR, bf16-mixed, 2 cores (docs/benchmarks.md): a compiled step
# saves ~0.12 s; compiling costs ~30 s with a cold Inductor cache (once per network shape and
# machine) and ~3 s with a warm one, so a 100-step run wins from its second time on.
COMPILE_MIN_STEPS = 100


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
        compile: ``torch.compile`` the network for the training steps (validation and test run
            it eagerly, on the same weights): ``True``, ``False`` or ``"auto"``, which compiles
            on a CPU when the run plans at least :data:`COMPILE_MIN_STEPS` training steps (the
            first compilation costs ~30 s, later runs reuse Inductor's on-disk cache; a compiled
            bf16 step of RimNet 8/16/32 is ~1.4x faster: docs/benchmarks.md).
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
        compile: bool | str = False,
        seed: int | None = None,
        inference: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "inference"])
        self.optimizer = optimizer
        self.inference = dict(inference or {})
        if compile not in (True, False, "auto"):
            raise ConfigError(f"compile must be true, false or auto, not {compile!r}")
        self.net = net.to(memory_format=torch.channels_last_3d) if channels_last else net
        object.__setattr__(self, "_train_net", self.net)  # not a child: see on_fit_start
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

    def _step(
        self, batch, stage: str, net: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = batch
        # float32 patches into a float64 run (precision=64)
        logits = (self.net if net is None else net)(x.to(self.dtype))
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
        return self._step(batch, "train", self._train_net)[0]

    def on_fit_start(self) -> None:
        """Compile the training network if :meth:`compiles` says so (kept out of the module's
        children, so checkpoints hold the plain network's keys)."""
        if self.compiles(self.trainer.estimated_stepping_batches, self.device.type):
            log.info("torch.compile: the network's training step (first steps compile it)")
            object.__setattr__(self, "_train_net", torch.compile(self.net))

    def compiles(self, steps: float, device: str) -> bool:
        """Whether a run of ``steps`` training steps on ``device`` compiles its network."""
        mode = self.hparams.get("compile", False)
        if mode == "auto":
            return device == "cpu" and steps >= COMPILE_MIN_STEPS
        return bool(mode)

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
