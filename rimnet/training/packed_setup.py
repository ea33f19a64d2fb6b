"""Building the members of a pack: each run's datamodule, module, staircase, checkpoint rule and
loggers, and resuming a member from its own ``last.ckpt``."""

from __future__ import annotations

import logging

import pytorch_lightning as pl
import torch

from rimnet.data.cache import PatchCache
from rimnet.io import safe_load
from rimnet.models.packed import PackedRimNet
from rimnet.training.engine import RunSpec, build_run
from rimnet.training.packed_members import Member
from rimnet.training.packed_module import PackedModule
from rimnet.training.run import ENGINE_KEY
from rimnet.training.schedule import Staircase, StaircaseLR
from rimnet.training.wandb_media import is_wandb

log = logging.getLogger(__name__)


def build_member(spec: RunSpec, cache: PatchCache) -> Member:
    """A run as a member of a pack, built as the sequential engine builds it (:func:`build_run`)."""
    cfg = spec.cfg
    parts = build_run(spec, cache, " (packed)")
    callbacks = parts.callbacks
    staircase = next((c.staircase for c in callbacks if isinstance(c, StaircaseLR)), None)
    if staircase is None:
        staircase = Staircase(list(cfg.schedule.rates), cfg.schedule.patience)
    checkpoint = next((c for c in callbacks if isinstance(c, pl.callbacks.ModelCheckpoint)), None)
    max_epochs = cfg.trainer.get("max_epochs")
    max_epochs = 1000 if max_epochs is None else (10**9 if max_epochs < 0 else max_epochs)
    return Member(
        spec, parts.seed, parts.module, parts.dm, staircase, checkpoint, parts.loggers, max_epochs
    )


def resume_weights(packed: PackedRimNet, slot: int, m: Member) -> dict | None:
    """Put a member's saved weights into its slot; returns the checkpoint (None: start anew)."""
    if m.spec.resume is None:
        return None
    ckpt = safe_load(m.spec.resume, "checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get(ENGINE_KEY), dict):
        log.info(f"{m.spec.resume} was written by the sequential engine; {m.name} starts anew")
        return None
    net_state = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items()}
    with torch.no_grad():
        for key, t in packed.member_tensors(slot).items():
            if t.ndim:
                t.copy_(net_state[key].to(t))
    state = ckpt[ENGINE_KEY]
    m.staircase.load_state_dict(ckpt["callbacks"]["StaircaseLR"])
    m.epoch, m.global_step, m.done = state["next_epoch"], ckpt["global_step"], state["done"]
    m.best_score, m.best_path = state["best_score"], state["best_path"]
    m.written.add(str(m.spec.resume))
    if m.best_path and safe_load(m.best_path, "checkpoint"):
        best = safe_load(m.best_path, "checkpoint")["state_dict"]
        m.best_state = {k[len("net.") :]: v for k, v in best.items()}
    log.info(f"{m.name}: resumed at epoch {m.epoch} from {m.spec.resume}")
    return ckpt


class ResumeOptimizer(pl.Callback):
    """Loads resumed members' Adam states once the Trainer has built the optimizer."""

    def __init__(self, members: list[Member], saved: dict[int, dict]) -> None:
        self.members, self.saved = members, saved

    def on_train_start(self, trainer: pl.Trainer, module: PackedModule) -> None:
        opt = module.optimizers().optimizer
        for slot, ckpt in self.saved.items():
            names = [n for n, _ in self.members[slot].module.net.named_parameters()]
            opt.load_member_state(slot, ckpt["optimizer_states"][0], names)


def open_wandb(logger: object) -> None:
    """Give each member's W&B logger a run of its own: Lightning's WandbLogger would reuse the
    process's current run, which would put every member of the pack into one run."""
    if is_wandb(logger) and logger._experiment is None:
        import wandb

        logger._experiment = wandb.init(**logger._wandb_init, reinit="create_new")
