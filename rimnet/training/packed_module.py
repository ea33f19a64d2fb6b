"""``PackedModule``: K runs of one configuration as one LightningModule.

It holds the members' networks as one :class:`~rimnet.models.PackedRimNet` and trains them with
manual optimization: per step one grouped forward/backward of the members whose batch is full, a
functional call on its own views for a member's smaller last batch, then one member-wise Adam step
(:class:`~rimnet.training.member_adam.MemberAdam`) at each member's own rate. A member that sits a
step out keeps its parameters, moments and batch-norm statistics, so each member follows the path
it follows alone, up to floating-point summation order. The Trainer supplies the device, the
precision, the loop, ``limit_*``, ``fast_dev_run`` and the progress bar;
:class:`~rimnet.training.packed_members.PackMembers` ends each member's epoch.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from rimnet.models.packed import PackedRimNet, member_view
from rimnet.training.member_adam import MemberAdam


class PackedModule(pl.LightningModule):
    """The pack as a LightningModule.

    Args:
        packed: the members' networks, packed.
        template: one member's network (its views of the pack run through it).
        weights: each member's class weights of the loss, (K, 2).
        optimizer: a member's configured ``torch.optim.Adam`` (its constants are shared).
        lrs: a callable giving each member's current rate, (K,).

    Example:
        >>> template = RimNet(**packed.config)  # doctest: +SKIP
        >>> module = PackedModule(packed, template, weights, adam, rates)  # doctest: +SKIP
    """

    def __init__(
        self,
        packed: PackedRimNet,
        template: nn.Module,
        weights: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        lrs: Any,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.packed, self.template = packed, template
        self.register_buffer("weights", weights, persistent=False)
        self._optimizer, self._lrs = optimizer, lrs
        self.k = packed.k
        self.epoch_loss: torch.Tensor | None = None
        self.epoch_probs: list[tuple[torch.Tensor, torch.Tensor, np.ndarray]] = []
        self.epoch_steps = np.zeros(self.k, np.int64)

    def configure_optimizers(self) -> MemberAdam:
        return MemberAdam.from_optimizer(self.packed, self._optimizer)

    def mixed(self) -> bool:
        """Whether the Trainer runs the forward under autocast (``*-mixed`` precision)."""
        return "mixed" in str(self.trainer.precision)

    def _exact(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits for the loss: float32 under autocast (as Lightning's mixed precision)."""
        return logits.float() if self.mixed() else logits

    def on_train_epoch_start(self) -> None:
        self.epoch_loss = torch.zeros(self.k, dtype=torch.float64, device=self.device)
        self.epoch_probs = []
        self.epoch_steps = np.zeros(self.k, np.int64)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        sizes = np.asarray(batch["sizes"])
        b = batch["idx"].shape[1]
        x, y = batch["x"].to(self.dtype), batch["y"]
        opt = self.optimizers()
        opt.zero_grad()
        full = sizes == b
        probs = torch.zeros(self.k, b, device=self.device)
        if full.any():
            on = torch.as_tensor(full, device=self.device)
            self.epoch_loss += self._packed_step(x, y, on, bool(full.all()), probs)
        for s in np.flatnonzero((sizes > 0) & ~full):
            n = int(sizes[s])
            self.epoch_loss[s] += self._member_step(int(s), x[s, :n], y[s, :n], probs)
        stepped = torch.as_tensor(sizes > 0, device=self.device)
        opt.step(active=stepped, lrs=torch.as_tensor(self._lrs(), device=self.device))
        self.epoch_steps += sizes > 0
        self.epoch_probs.append((probs.detach(), y.detach(), sizes))

    def _packed_step(
        self, x: torch.Tensor, y: torch.Tensor, full: torch.Tensor, everyone: bool, probs
    ) -> torch.Tensor:
        """Forward/backward of the members with a full batch; returns their summed losses."""
        saved = None if everyone else _bn_statistics(self.packed)
        logits = self._exact(self.packed(x))
        losses = weighted_ce(logits, y, self.weights)
        self.manual_backward((losses * full).sum())
        if saved is not None:  # members that sat out keep their batch-norm statistics
            _restore_bn_statistics(self.packed, saved, full)
        probs[:] = torch.where(full[:, None], logits.detach().softmax(-1)[..., 1], probs)
        return (losses.detach() * full).double() * x.shape[1]

    def _member_step(self, s: int, x: torch.Tensor, y: torch.Tensor, probs) -> torch.Tensor:
        """Forward/backward of one member's smaller batch on its views of the pack."""
        self.template.train()
        logits = functional_call(self.template, self.packed.member_tensors(s), (x,))
        logits = self._exact(logits)
        loss = F.cross_entropy(logits, y, weight=self.weights[s])
        self.manual_backward(loss)
        probs[s, : len(y)] = logits.detach().softmax(-1)[:, 1]
        return loss.detach().double() * len(y)

    def epoch_outputs(self, slot: int) -> tuple[float, torch.Tensor, torch.Tensor]:
        """(summed loss, training probabilities, labels) of member ``slot`` this epoch."""
        probs, labels = [], []
        for p, y, sizes in self.epoch_probs:
            n = int(sizes[slot])
            probs.append(p[slot, :n])
            labels.append(y[slot, :n])
        cat = torch.cat(probs).float().cpu() if probs else torch.zeros(0)
        ys = torch.cat(labels).cpu() if labels else torch.zeros(0, dtype=torch.long)
        return float(self.epoch_loss[slot]) if self.epoch_loss is not None else 0.0, cat, ys

    @torch.no_grad()
    def member_logits(self, tensors: dict, x: torch.Tensor) -> torch.Tensor:
        """One member's logits (eval mode) for patches ``x``, from its ``tensors``."""
        self.template.eval()
        context = self.trainer.precision_plugin.forward_context() if self._trainer else None
        with context or contextlib.nullcontext():
            return self._exact(functional_call(self.template, tensors, (x.to(self.dtype),)))


def weighted_ce(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each member's class-weighted mean cross-entropy (as ``F.cross_entropy``): (K,)."""
    nll = -logits.log_softmax(-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (K, B)
    w = weights.gather(1, y)  # (K, B)
    return (w * nll).sum(1) / w.sum(1)


def _bn_statistics(packed: PackedRimNet) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in packed.named_buffers() if b.ndim}


def _restore_bn_statistics(
    packed: PackedRimNet, saved: dict[str, torch.Tensor], keep_new: torch.Tensor
) -> None:
    with torch.no_grad():
        for name, buf in packed.named_buffers():
            if buf.ndim:
                view, old = member_view(buf, packed.k), member_view(saved[name], packed.k)
                on = keep_new.view((packed.k,) + (1,) * (view.ndim - 1))
                view.copy_(torch.where(on, view, old))
