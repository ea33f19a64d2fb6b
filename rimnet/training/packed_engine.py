"""``PackedEngine``: trains several runs at once as one Lightning fit of a
:class:`~rimnet.training.packed_module.PackedModule`.

Each run (a *member*) keeps what it would have alone: its training patients, shuffle and
augmentation variants, class weights, Adam state and step count, learning-rate staircase and stop,
validation, checkpoints, logs and test predictions. Only the arithmetic is shared: one grouped
forward/backward and one member-wise Adam step per step. The Trainer supplies the device, the
precision, the loop, ``limit_train_batches``, ``fast_dev_run``, the progress bar and the user's
generic callbacks; what cannot work per member is refused before any work (:func:`check_pack`).
"""

from __future__ import annotations

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from rimnet.data.cache import PatchCache
from rimnet.errors import ConfigError
from rimnet.io import fingerprint
from rimnet.models.packed import PackedRimNet
from rimnet.models.registry import build_network, network_name, offers_packing
from rimnet.training.checks import PACK_PRECISIONS, PER_MEMBER, check_pack
from rimnet.training.engine import (
    RunResult,
    RunSpec,
    SequentialEngine,
    instantiate_list,
    prediction_table,
)
from rimnet.training.packed_data import PackDataModule
from rimnet.training.packed_members import Member, PackMembers, evaluate, member_state
from rimnet.training.packed_module import PackedModule
from rimnet.training.packed_setup import (
    ResumeOptimizer,
    build_member,
    open_wandb,
    resume_weights,
)
from rimnet.training.run import finish_wandb, run_config
from rimnet.training.wandb_media import is_wandb, log_test_media

GENERIC_CALLBACKS = (pl.callbacks.ProgressBar, pl.callbacks.ModelSummary, pl.callbacks.Timer)


class PackedEngine:
    """Trains the runs it is given together, K members per pack (the GPU default).

    Args:
        max_members: the most members in one pack (more runs are trained in several packs).

    Example:
        >>> results = PackedEngine().run(specs, cache)  # doctest: +SKIP
    """

    def __init__(self, max_members: int = 16) -> None:
        if max_members < 1:
            raise ConfigError(f"engine.max_members must be at least 1, not {max_members}")
        self.max_members = max_members

    def run(self, specs: list[RunSpec], cache: PatchCache) -> list[RunResult]:
        for spec in specs[:1]:
            check_pack(spec.cfg)
        results: dict[int, RunResult] = {}
        for group in _groups(specs):
            for start in range(0, len(group), self.max_members):
                chunk = group[start : start + self.max_members]
                for i, result in zip(chunk, train_pack([specs[i] for i in chunk], cache)):
                    results[i] = result
        return [results[i] for i in range(len(specs))]


class AutoEngine:
    """``engine=auto`` (the default): :class:`PackedEngine` where a run trains on one CUDA GPU
    (``trainer=gpu``) in a precision the pack supports, :class:`SequentialEngine` elsewhere (the
    CPU, DDP, fp16, networks that do not offer packing)."""

    def __init__(self, max_members: int = 16) -> None:
        self.packed = PackedEngine(max_members)

    def run(self, specs: list[RunSpec], cache: PatchCache) -> list[RunResult]:
        engine = self.packed if specs and packable(specs[0].cfg) else SequentialEngine()
        return engine.run(specs, cache)


def packable(cfg: DictConfig) -> bool:
    """Whether ``engine=auto`` packs this run: a network that offers packing (RimNet: with the
    paper's fusion), one CUDA device, precision 32/64/bf16-mixed."""
    t = cfg.trainer
    return (
        offers_packing(str(cfg.model.net.get("_target_")))
        and cfg.model.net.get("fusion", "early+late") == "early+late"
        and torch.cuda.is_available()
        and str(t.get("accelerator")) in ("gpu", "cuda", "auto")
        and t.get("devices", 1) in (1, "1")
        and t.get("strategy") in (None, "auto")
        and t.get("precision") in PACK_PRECISIONS
    )


def _groups(specs: list[RunSpec]) -> list[list[int]]:
    """Indices of specs that can share a pack (same network, inputs, batch size, precision)."""
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        plain = OmegaConf.to_container(spec.cfg, resolve=True)
        key = fingerprint(
            {
                "net": plain["model"]["net"],
                "modalities": plain["modalities"],
                "loader": {k: v for k, v in plain["data"]["loader"].items() if k != "seed"},
                "trainer": {k: v for k, v in plain["trainer"].items() if k not in PER_MEMBER},
                "cache": plain["data"]["cache_dir"],
                "channels_last": plain["channels_last"],
            }
        )
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def train_pack(specs: list[RunSpec], cache: PatchCache) -> list[RunResult]:
    """Train one pack of runs to their stops, then test each; results in spec order."""
    cfg = specs[0].cfg
    members = [build_member(spec, cache) for spec in specs]
    packed = PackedRimNet.from_models([m.module.net for m in members])
    saved = {s: c for s, m in enumerate(members) if (c := resume_weights(packed, s, m))}
    if cfg.channels_last:
        packed = packed.to(memory_format=torch.channels_last_3d)
    template = build_network(network_name(type(members[0].module.net)), packed.config)
    weights = torch.stack([m.module.ce_weight for m in members])
    module = PackedModule(
        packed, template, weights, members[0].module.configure_optimizers(), lambda: _lrs(members)
    )
    batch = int(cfg.data.loader.batch_size)
    generic = [
        c for c in instantiate_list(cfg.get("callbacks")) if isinstance(c, GENERIC_CALLBACKS)
    ]
    rounds = max((m.max_epochs - m.epoch for m in members if not m.done), default=0)
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[
            *generic,
            ResumeOptimizer(members, saved),
            PackMembers(members, batch, packed.config),
        ],
        logger=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        max_epochs=max(rounds, 1),
    )
    try:
        for m in members:
            for logger in m.loggers:
                open_wandb(logger)
                logger.log_hyperparams({**run_config(m.spec.cfg), **m.module.hparams})
        if rounds:
            trainer.fit(module, datamodule=PackDataModule(members, cache, batch))
        return [_test(module, slot, m, cache, batch) for slot, m in enumerate(members)]
    finally:
        for m in members:
            for logger in m.loggers:
                logger.finalize("success")
                if is_wandb(logger) and logger._experiment is not None:
                    logger._experiment.finish()
        finish_wandb()


def _lrs(members: list[Member]) -> list[float]:
    return [m.lr for m in members]


def _test(module: PackedModule, slot: int, m: Member, cache: PatchCache, batch: int) -> RunResult:
    """Predictions and metrics of each test set (best or final weights, as the spec says)."""
    state = member_state(module, slot, m.global_step)
    if m.spec.test_weights == "best" and m.best_state is not None:
        state = m.best_state
    tensors = {
        k: v.to(module.device, module.dtype if v.is_floating_point() else v.dtype)
        for k, v in state.items()
    }
    loader = hydra.utils.instantiate(m.spec.cfg.data.loader)
    predictions, metrics = {}, {}
    for name, ids in m.spec.test_sets.items():
        test_dm = loader(cache, test_ids=ids)
        values, prob = evaluate(module, m, "test", test_dm.rows["test"], tensors, batch)
        predictions[name] = prediction_table(test_dm, range(len(prob)), prob, m.spec.cfg)
        if not metrics:
            metrics = values
            for logger in m.loggers:
                logger.log_metrics(values, step=m.global_step)
                logger.save()
    tested = m.best_path if m.spec.test_weights == "best" and m.best_path else m.last_saved
    seeds = {"seed": int(m.spec.cfg.seed), "run_seed": m.seed}
    first = next(iter(predictions.values()), None)
    if first is not None:
        log_test_media(m.loggers, first, cache, list(m.spec.cfg.modalities), seeds, tested)
    return RunResult(predictions, metrics, m.staircase)
