"""The members of a pack: what each run owns, and the callback that ends each member's epoch.

:class:`PackMembers` does at the end of every epoch, for each member still training, what the
sequential engine's callbacks and loggers do for a run alone: validation, the learning-rate
staircase and stop, the best and last checkpoints in the run's own folder (Lightning's layout, with
the ``rimnet`` entry and a ``packed_engine`` entry to resume from), and the run's own logs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from rimnet.data.contract import center_crop
from rimnet.data.datamodule import PatchDataModule
from rimnet.io import atomic_path
from rimnet.models.registry import CHECKPOINT_KEY, network_name
from rimnet.training.engine import RunSpec
from rimnet.training.module import RimNetModule
from rimnet.training.packed_module import PackedModule
from rimnet.training.run import ENGINE_KEY
from rimnet.training.schedule import Staircase

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One run inside a pack, with everything it owns."""

    spec: RunSpec
    seed: int
    module: RimNetModule
    dm: PatchDataModule
    staircase: Staircase
    checkpoint: pl.callbacks.ModelCheckpoint | None
    loggers: list
    max_epochs: int
    epoch: int = 0  # the next epoch to train
    global_step: int = 0
    done: bool = False
    best_score: float | None = None
    best_path: str | None = None
    best_state: dict | None = None
    last_saved: str | None = None
    written: set[str] = field(default_factory=set)  # checkpoints this member's runs wrote

    @property
    def name(self) -> str:
        cfg = self.spec.cfg
        return f"{cfg.experiment_name} fold {cfg.fold} {cfg.run.stage}"

    @property
    def lr(self) -> float:
        return self.staircase.rate_at(self.epoch)


def limit(value: float | int | None, n: int, batch: int) -> int:
    """Batches of ``n`` items under Lightning's ``limit_*_batches`` (a count or a fraction)."""
    batches = -(-n // batch)
    if value is None or (isinstance(value, float) and value == 1.0):
        return batches
    if isinstance(value, float):
        return int(batches * value)
    return min(int(value), batches)


def evaluate(
    module: PackedModule, m: Member, stage: str, rows: np.ndarray, tensors: dict, batch: int
) -> tuple[dict, np.ndarray]:
    """Loss (batch-size-weighted mean of batch losses, as Lightning logs it), AUROC, AP and
    accuracy of ``stage`` (val/test) on original patches ``rows``, and the probabilities."""
    cache = m.dm.cache
    out = []
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        x = center_crop(np.asarray(cache.patches[part][:, m.dm.channels]), m.dm.patch_size)
        x = torch.from_numpy(np.ascontiguousarray(x)).to(module.device)
        out.append(module.member_logits(tensors, x))
    logits = torch.cat(out) if out else torch.zeros(0, 2, device=module.device)
    labels = torch.as_tensor(
        cache.lesions["label"].to_numpy()[rows], dtype=torch.long, device=module.device
    )
    weight = m.module.ce_weight.to(module.device, logits.dtype)
    losses = [
        F.cross_entropy(logits[i : i + batch], labels[i : i + batch], weight=weight)
        * len(labels[i : i + batch])
        for i in range(0, len(labels), batch)
    ]
    prob = logits.softmax(-1)[:, 1].cpu()
    metrics = {f"{stage}/loss": float(sum(losses)) / max(len(labels), 1)}
    metrics.update(_metrics(m.module, stage, prob, labels.cpu()))
    return metrics, prob.numpy()


def _metrics(module: RimNetModule, stage: str, prob: torch.Tensor, labels: torch.Tensor) -> dict:
    """AUROC, AP and accuracy with the module's own metric objects (as the sequential engine)."""
    if not len(labels):
        return {}
    collection = module.metrics[f"{stage}_metrics"]
    collection.update(prob, labels)
    values = {k: float(v) for k, v in collection.compute().items()}
    collection.reset()
    return values


def member_state(module: PackedModule, slot: int, steps: int) -> dict:
    """Member ``slot``'s state dict; its batch norms have seen one batch per step of its own."""
    state = module.packed.member_state_dict(slot)
    for key in state:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(steps, dtype=torch.long)
    return state


class PackMembers(pl.Callback):
    """Ends each member's epoch: validation, staircase, checkpoints and logs; stops the Trainer
    when every member is done.

    Args:
        members: the pack's members, in slot order.
        batch: the batch size (validation batches).
        config: the network's keyword arguments (stored in every checkpoint).
    """

    def __init__(self, members: list[Member], batch: int, config: dict) -> None:
        self.members, self.batch, self.config = members, batch, config
        self.started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, module: PackedModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: PackedModule) -> None:
        active = [m for m in self.members if not m.done]
        patches = sum(len(module.epoch_outputs(s)[2]) for s, m in enumerate(self.members))
        elapsed = time.perf_counter() - self.started
        log.info(
            f"packed round: {len(active)} members, {patches} patches in {elapsed:.1f} s "
            f"({patches / max(elapsed, 1e-9):.0f} patches/s)"
        )
        for slot, m in enumerate(self.members):
            if m.done:
                continue
            m.global_step += int(module.epoch_steps[slot])
            loss, probs, labels = module.epoch_outputs(slot)
            metrics = {"train/loss": loss / max(len(labels), 1), "lr": m.lr}
            metrics.update(_metrics(m.module, "train", probs, labels))
            rows = m.dm.rows["val"]
            n_val = limit(m.spec.cfg.trainer.get("limit_val_batches"), len(rows), self.batch)
            if n_val:
                tensors = module.packed.member_tensors(slot)
                rows = rows[: n_val * self.batch]
                metrics.update(evaluate(module, m, "val", rows, tensors, self.batch)[0])
            self._end_epoch(module, slot, m, metrics)
        if all(m.done for m in self.members):
            trainer.should_stop = True

    def _end_epoch(self, module: PackedModule, slot: int, m: Member, metrics: dict) -> None:
        epoch, val = m.epoch, metrics.get("val/loss")
        action = "continue"
        if m.staircase.fixed_epochs is not None or val is not None:
            action = m.staircase.step(val)
        m.epoch += 1
        m.done = action == "stop" or m.epoch >= m.max_epochs
        state = member_state(module, slot, m.global_step)
        self._checkpoints(module, slot, m, epoch, state, metrics)
        for logger in m.loggers:
            logger.log_metrics({**metrics, "epoch": epoch}, step=m.global_step - 1)
            logger.save()
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "lr")
        stop = "  (stop)" if m.done else ""
        log.info(f"{m.name} epoch {epoch}: {shown}  lr {metrics['lr']:.2g}{stop}")

    def _checkpoints(
        self, module: PackedModule, slot: int, m: Member, epoch: int, state: dict, metrics: dict
    ) -> None:
        """Best (by the monitored metric) or per-epoch checkpoint and ``last.ckpt``, as the
        configured ModelCheckpoint would write them."""
        cb = m.checkpoint
        score = None if cb is None or cb.monitor is None else metrics.get(cb.monitor)
        better = score is not None and (
            m.best_score is None
            or (score < m.best_score if cb.mode == "min" else score > m.best_score)
        )
        if better:
            m.best_score, m.best_state = score, {k: v.clone() for k, v in state.items()}
        if cb is None:
            return
        names = {"epoch": epoch, "step": m.global_step, **metrics}
        if better or cb.monitor is None:
            path = cb.format_checkpoint_name(names)
            previous = m.best_path if better else m.last_saved
            if better:
                m.best_path = path
            else:
                m.last_saved = path
            self.save(module, slot, m, path, epoch, state)
            if previous and previous != path and Path(previous).is_file():
                Path(previous).unlink()  # our own earlier checkpoint, as ModelCheckpoint does
        if cb.save_last:
            last = str(Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}.ckpt")
            self.save(module, slot, m, last, epoch, state)

    def save(
        self, module: PackedModule, slot: int, m: Member, path: str, epoch: int, state: dict
    ) -> None:
        """Member ``slot``'s checkpoint in the layout export and evaluation read."""
        opt = module.optimizers().optimizer
        group = {k: v for k, v in module._optimizer.state_dict()["param_groups"][0].items()}
        names = [n for n, _ in m.module.net.named_parameters()]
        checkpoint = {
            "epoch": epoch,
            "global_step": m.global_step,
            "pytorch-lightning_version": pl.__version__,
            "state_dict": {f"net.{k}": v.cpu() for k, v in state.items()},
            "optimizer_states": [opt.member_state(slot, m.lr, names, group)],
            "lr_schedulers": [],
            "callbacks": {"StaircaseLR": m.staircase.state_dict()},
            "hyper_parameters": dict(m.module.hparams),
            CHECKPOINT_KEY: {
                **m.module.inference,
                "network": network_name(type(m.module.net)),
                "model": dict(self.config),
            },
            ENGINE_KEY: {
                "next_epoch": m.epoch,
                "done": m.done,
                "best_score": m.best_score,
                "best_path": m.best_path,
            },
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        mine = str(Path(path).resolve())
        with atomic_path(path, replace=mine in m.written) as tmp:
            torch.save(checkpoint, tmp)
        m.written.add(mine)
