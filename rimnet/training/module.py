"""``RimNetModule``: the LightningModule wrapping RimNet and its ablations."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC, BinaryAveragePrecision

from rimnet.io import atomic_path

# Lesion-table columns copied into every prediction row (evaluation needs the raters and location).
PREDICTION_COLUMNS = ["lesion_id", "patient_id", "site", "label", "rater1", "rater2", "consensus_needed", "location", "volume_mm3",
                      "center_i", "center_j", "center_k"]


class RimNetModule(pl.LightningModule):
    """Softmax cross-entropy + Adam over a RimNet; logs loss, AUROC, AP and accuracy per stage.

    Args:
        net: the network (a :class:`rimnet.models.RimNet`).
        lr: initial learning rate (the staircase callback sets the rate every epoch).
        class_weights: ``None`` (plain CE, the paper's choice after offline rebalancing to ~1:1),
            ``"balanced"`` (inverse class frequency of the training set, as the authors' code did) or
            two explicit weights for (rim-, rim+).
        experiment / fold: written into every prediction row.
        predictions_path: where the test step writes one row per lesion (``None``: not written); an
            attribute, so one module can test several sets into several files.
        channels_last: convert the network to channels-last-3d memory format.
        seed: the run's seed; when set, every training epoch reseeds the random generators from
            (seed, epoch), so a run resumed from its last epoch draws what an uninterrupted one did.

    Example:
        >>> from rimnet.models import RimNet
        >>> module = RimNetModule(RimNet(2, widths=(8, 16, 32)))
    """

    def __init__(self, net: nn.Module, lr: float = 1e-4, class_weights: str | Sequence[float] | None = None,
                 experiment: str = "", fold: int | str = "", predictions_path: str | None = None, channels_last: bool = False,
                 seed: int | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "predictions_path"])
        self.predictions_path = predictions_path
        self.net = net.to(memory_format=torch.channels_last_3d) if channels_last else net
        self.register_buffer("ce_weight", torch.ones(2), persistent=False)
        metrics = MetricCollection({"auroc": BinaryAUROC(), "ap": BinaryAveragePrecision(), "acc": BinaryAccuracy()})
        self.metrics = nn.ModuleDict({f"{s}_metrics": metrics.clone(prefix=f"{s}/") for s in ("train", "val", "test")})
        self._test_rows: list[pd.DataFrame] = []
        self._updated: set[str] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def setup(self, stage: str) -> None:
        cw = self.hparams.class_weights
        if cw is None:
            return
        if cw == "balanced":
            labels = self.trainer.datamodule.table("train")["label"]
            counts = torch.tensor([(labels == 0).sum(), (labels == 1).sum()], dtype=torch.float).clamp(min=1)
            self.ce_weight = counts.sum() / (2 * counts)
        else:
            self.ce_weight = torch.as_tensor(list(cw), dtype=torch.float)

    def _step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, _ = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y, weight=self.ce_weight.to(logits.device))
        prob = logits.softmax(1)[:, 1]
        self.metrics[f"{stage}_metrics"].update(prob.detach(), y)
        self._updated.add(stage)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "test", batch_size=len(y))
        return loss, prob

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[0]

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        _, prob = self._step(batch, "test")
        rows = self._test_table.iloc[batch[2].cpu().numpy()].reset_index(drop=True)
        rows.insert(4, "prob", prob.float().cpu().numpy())
        rows["experiment"], rows["fold"] = self.hparams.experiment, self.hparams.fold
        self._test_rows.append(rows)

    def _epoch_end(self, stage: str) -> None:
        m = self.metrics[f"{stage}_metrics"]
        if stage in self._updated:  # AUROC/AP of a one-class stage are 0 (torchmetrics warns)
            self.log_dict(m.compute(), prog_bar=stage == "val")
        m.reset()
        self._updated.discard(stage)

    def on_train_epoch_start(self) -> None:
        if self.hparams.get("seed") is not None:
            pl.seed_everything((self.hparams.seed + 7919 * (self.current_epoch + 1)) % (2**31 - 1), verbose=False)

    def on_train_epoch_end(self) -> None:
        self._epoch_end("train")

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_start(self) -> None:
        self._test_rows = []
        table = self.trainer.datamodule.table("test")
        self._test_table = table[[c for c in PREDICTION_COLUMNS if c in table.columns]]

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")
        if self.predictions_path and self._test_rows:
            path = Path(self.predictions_path)
            with atomic_path(path) as tmp:
                pd.concat(self._test_rows, ignore_index=True).to_csv(tmp, index=False)

    def test_predictions(self) -> pd.DataFrame:
        """Rows collected by the last test run."""
        return pd.concat(self._test_rows, ignore_index=True) if self._test_rows else pd.DataFrame()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
