"""``PackedEngine``: trains several runs at once as one :class:`~rimnet.models.PackedRimNet`.

Each run (a *member*) keeps what it would have alone: its own training patients, shuffle and
augmentation variants (the datamodule's seeded permutations, drawn for a whole epoch at once and
moved to the device once), its class weights, its Adam state and step count, its learning-rate
staircase and stop, its validation, checkpoints, logs and test predictions. Only the arithmetic is
shared: one grouped forward/backward and one member-wise Adam update per step.

A step packs the members whose batch is full. A member's last, smaller batch of an epoch steps on
its own, by a functional call on its views of the packed parameters. A member that sits out a
step keeps its parameters, moments and batch-norm statistics. Members that have stopped leave the
pack at the next epoch (the pack is rebuilt without them). So a member trained in a pack follows
the path it follows under :class:`~rimnet.training.engine.SequentialEngine`, up to floating-point
summation order (``trainer.precision=64`` makes that visible only below 1e-6; the tests compare
the two engines so).

Checkpoints are written in the Lightning layout that export and evaluation read (``state_dict``
with ``net.`` keys, ``optimizer_states``, the staircase under ``callbacks``, the ``rimnet`` entry),
plus a ``packed_engine`` entry from which this engine resumes.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.func import functional_call

from rimnet.data.augment import batched_variants
from rimnet.data.cache import PatchCache
from rimnet.data.contract import center_crop
from rimnet.data.datamodule import PatchDataModule
from rimnet.errors import ConfigError
from rimnet.io import atomic_path, fingerprint, safe_load
from rimnet.models.packed import PackedRimNet, member_view
from rimnet.models.registry import CHECKPOINT_KEY, network_name, offers_packing
from rimnet.models.rimnet import RimNet
from rimnet.training.engine import (
    RunResult,
    RunSpec,
    SequentialEngine,
    inference_description,
    instantiate_list,
    prediction_table,
)
from rimnet.training.member_adam import MemberAdam
from rimnet.training.module import RimNetModule
from rimnet.training.run import ENGINE_KEY, finish_wandb, run_config, run_seed
from rimnet.training.schedule import Staircase, StaircaseLR

MIXED = {"bf16-mixed": torch.bfloat16}
FULL = {None: torch.float32, "32": torch.float32, "32-true": torch.float32, 32: torch.float32}
DOUBLE = {"64": torch.float64, "64-true": torch.float64, 64: torch.float64}


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
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # positions in the store
    epoch: int = 0  # the next epoch to train
    global_step: int = 0
    done: bool = False
    best_score: float | None = None
    best_path: str | None = None
    best_state: dict | None = None
    last_saved: str | None = None

    @property
    def name(self) -> str:
        cfg = self.spec.cfg
        return f"{cfg.experiment_name} fold {cfg.fold} {cfg.run.stage}"

    @property
    def lr(self) -> float:
        s = self.staircase
        if s.fixed_epochs is not None:
            return s.rate_for_epoch(self.epoch) or s.rates[-1]
        return s.lr


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
            target = str(spec.cfg.model.net.get("_target_"))
            if not offers_packing(target):
                raise ConfigError(
                    f"engine=packed: the network {target} does not offer packing (no packed(k) "
                    "class method); use engine=sequential or engine=auto"
                )
        results: dict[int, RunResult] = {}
        for group in _groups(specs):
            for start in range(0, len(group), self.max_members):
                chunk = group[start : start + self.max_members]
                for i, result in zip(chunk, Pack([specs[i] for i in chunk], cache).train()):
                    results[i] = result
        return [results[i] for i in range(len(specs))]


class AutoEngine:
    """``engine=auto`` (the default): :class:`PackedEngine` where a run trains on one CUDA GPU
    (``trainer=gpu``) in a precision the pack supports, :class:`SequentialEngine` elsewhere (the
    CPU, DDP, fp16)."""

    def __init__(self, max_members: int = 16) -> None:
        self.packed = PackedEngine(max_members)

    def run(self, specs: list[RunSpec], cache: PatchCache) -> list[RunResult]:
        return (self.packed if specs and packable(specs[0].cfg) else SequentialEngine()).run(
            specs, cache
        )


def packable(cfg: DictConfig) -> bool:
    """Whether ``engine=auto`` packs this run: a network that offers packing, one CUDA device,
    precision 32/64/bf16-mixed."""
    t = cfg.trainer
    return (
        offers_packing(str(cfg.model.net.get("_target_")))
        and torch.cuda.is_available()
        and str(t.get("accelerator")) in ("gpu", "cuda", "auto")
        and t.get("devices", 1) in (1, "1")
        and t.get("strategy") in (None, "auto")
        and (t.get("precision") in FULL or t.get("precision") in MIXED)
    )


def _groups(specs: list[RunSpec]) -> list[list[int]]:
    """Indices of specs that can share a pack (same network, inputs, batch size, precision)."""
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        cfg = spec.cfg
        plain = OmegaConf.to_container(cfg, resolve=True)
        key = fingerprint(
            {
                "net": plain["model"]["net"],
                "modalities": plain["modalities"],
                "loader": {k: v for k, v in plain["data"]["loader"].items() if k != "seed"},
                "trainer": {k: plain["trainer"].get(k) for k in ("accelerator", "precision")},
                "cache": plain["data"]["cache_dir"],
                "channels_last": plain["channels_last"],
            }
        )
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _device(cfg: DictConfig) -> torch.device:
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    devices = cfg.trainer.get("devices", 1)
    if devices not in (1, "1", [0]) or cfg.trainer.get("strategy") not in (None, "auto"):
        raise ConfigError(
            f"engine=packed trains on one device (trainer.devices={devices}, strategy="
            f"{cfg.trainer.get('strategy')}): use engine=sequential for several GPUs"
        )
    if accelerator == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator == "auto":
        return torch.device("cpu")
    raise ConfigError(f"trainer.accelerator={accelerator} but no CUDA device is available")


def _precision(cfg: DictConfig) -> tuple[torch.dtype, torch.dtype | None]:
    """(parameter dtype, autocast dtype or None) of ``trainer.precision``."""
    p = cfg.trainer.get("precision")
    if p in FULL:
        return FULL[p], None
    if p in DOUBLE:
        return DOUBLE[p], None
    if p in MIXED:
        return torch.float32, MIXED[p]
    raise ConfigError(
        f"engine=packed supports trainer.precision 32, 64 or bf16-mixed, not {p!r} "
        "(fp16 needs a loss scaler per member: use bf16-mixed, or engine=sequential)"
    )


class Pack:
    """K members of one configuration trained together; :meth:`train` returns their results."""

    def __init__(self, specs: list[RunSpec], cache: PatchCache) -> None:
        cfg = specs[0].cfg
        if cfg.data.loader.get("augment", "batched") != "batched":
            raise ConfigError(
                "engine=packed augments on the device (data.loader.augment=batched), not "
                f"{cfg.data.loader.augment}: use engine=sequential for the TorchIO reference path"
            )
        self.cache, self.device = cache, _device(cfg)
        self.dtype, self.autocast = _precision(cfg)
        self.members = [self._member(spec) for spec in specs]
        self.batch = int(cfg.data.loader.batch_size)
        dm = self.members[0].dm
        self.patch_size, self.channels = dm.patch_size, dm.channels
        self.store, self.labels = self._store()
        nets = [m.module.net.to(self.device, self.dtype) for m in self.members]
        self.packed = PackedRimNet.from_models(nets)
        if cfg.channels_last:
            self.packed = self.packed.to(memory_format=torch.channels_last_3d)
        self.template = RimNet(**self.packed.config).to(self.device, self.dtype)
        first = self.members[0].module
        optimizer = first.configure_optimizers()
        self.param_names = [n for n, _ in first.net.named_parameters()]
        self.group = {k: v for k, v in optimizer.state_dict()["param_groups"][0].items()}
        self.opt = MemberAdam.from_optimizer(self.packed, optimizer)
        self.slots = list(range(len(self.members)))  # pack slot of each member (None: left)
        self._final_states: dict[int, dict] = {}  # weights of members that left the pack
        self.written: set[str] = set()  # checkpoints this engine wrote (it may replace them)
        for i, m in enumerate(self.members):
            self._resume(i, m)
        self.weights = torch.stack([m.module.ce_weight for m in self.members]).to(
            self.device, self.dtype
        )

    # --- set-up -----------------------------------------------------------------------------

    def _member(self, spec: RunSpec) -> Member:
        cfg = spec.cfg
        loader = hydra.utils.instantiate(cfg.data.loader)
        dm = loader(self.cache, train_ids=spec.train_ids, val_ids=spec.val_ids)
        print(
            f"{cfg.experiment_name} fold {cfg.fold} {cfg.run.stage}: {len(dm.rows['train'])} "
            f"training patches, {len(dm.rows['val'])} validation lesions (packed)"
        )
        seed = run_seed(cfg.seed, cfg.experiment_name, cfg.fold, cfg.run.stage)
        pl.seed_everything(seed, workers=True, verbose=False)
        module = hydra.utils.instantiate(cfg.model, seed=seed, inference=inference_description(cfg))
        module.balance_classes(dm.table("train")["label"])
        callbacks = instantiate_list(cfg.get("callbacks"))
        staircase = next((c.staircase for c in callbacks if isinstance(c, StaircaseLR)), None)
        if staircase is None:
            staircase = Staircase(list(cfg.schedule.rates), cfg.schedule.patience)
        checkpoint = next(
            (c for c in callbacks if isinstance(c, pl.callbacks.ModelCheckpoint)), None
        )
        loggers = instantiate_list(cfg.get("logger"))
        max_epochs = cfg.trainer.get("max_epochs")
        max_epochs = 1000 if max_epochs is None else (10**9 if max_epochs < 0 else max_epochs)
        return Member(spec, seed, module, dm, staircase, checkpoint, loggers, int(max_epochs))

    def _store(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every member's training patches (selected channels) and labels, once, on the device."""
        union = np.unique(np.concatenate([m.dm.rows["train"] for m in self.members]))
        for m in self.members:
            m.rows = np.searchsorted(union, m.dm.rows["train"])
        patches = np.asarray(self.cache.patches[union][:, self.channels])
        labels = self.cache.lesions["label"].to_numpy()[union]
        return (
            torch.from_numpy(patches).to(self.device),
            torch.as_tensor(labels, dtype=torch.long, device=self.device),
        )

    def _resume(self, i: int, m: Member) -> None:
        if m.spec.resume is None:
            return
        ckpt = safe_load(m.spec.resume, "checkpoint")
        state = ckpt.get(ENGINE_KEY) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            warnings.warn(
                f"{m.spec.resume} was written by the sequential engine; engine=packed starts "
                f"{m.name} again from its seed (the same result)",
                stacklevel=2,
            )
            return
        self.written.add(str(Path(m.spec.resume).resolve()))
        net_state = {k[len("net.") :]: v for k, v in ckpt["state_dict"].items()}
        with torch.no_grad():
            for key, t in self.packed.member_tensors(i).items():
                if t.ndim:
                    t.copy_(net_state[key].to(t))
        self.opt.load_member_state(i, ckpt["optimizer_states"][0], self.param_names)
        m.staircase.load_state_dict(ckpt["callbacks"]["StaircaseLR"])
        m.epoch, m.global_step, m.done = state["next_epoch"], ckpt["global_step"], state["done"]
        m.best_score, m.best_path = state["best_score"], state["best_path"]
        if m.best_path and Path(m.best_path).is_file():
            best = safe_load(m.best_path, "checkpoint")["state_dict"]
            m.best_state = {k[len("net.") :]: v.to(self.device) for k, v in best.items()}
        print(f"{m.name}: resumed at epoch {m.epoch} from {m.spec.resume}")

    # --- training ---------------------------------------------------------------------------

    def train(self) -> list[RunResult]:
        """Train every member to its stop, then test each; returns results in member order."""
        try:
            for m in self.members:
                for logger in m.loggers:
                    _open_wandb(logger)
                    logger.log_hyperparams({**run_config(m.spec.cfg), **m.module.hparams})
            while any(not m.done for m in self.members):
                self._rebuild()
                self._round()
            return [self._test(i, m) for i, m in enumerate(self.members)]
        finally:
            for m in self.members:
                for logger in m.loggers:
                    logger.finalize("success")
                    if _is_wandb(logger) and logger._experiment is not None:
                        logger._experiment.finish()
            finish_wandb()

    def _rebuild(self) -> None:
        """Leave out the members that are done (their state is in their checkpoints)."""
        keep = [i for i, m in enumerate(self.members) if not m.done and self.slots[i] is not None]
        slots = [self.slots[i] for i in keep]
        if len(slots) == self.packed.k:
            return
        for i, m in enumerate(self.members):
            if m.done and self.slots[i] is not None:
                self._final_states[i] = self.packed.member_state_dict(self.slots[i])
        self.packed = self.packed.select(slots)
        self.opt = self.opt.select(self.packed, slots)
        self.weights = self.weights[torch.as_tensor(slots, device=self.device)]
        self.slots = [keep.index(i) if i in keep else None for i in range(len(self.members))]

    def _round(self) -> None:
        """One epoch of every member still training (each at its own epoch number)."""
        active = [i for i, m in enumerate(self.members) if not m.done]
        k, b = self.packed.k, self.batch
        started = time.perf_counter()
        plans = {i: self._epoch_plan(self.members[i]) for i in active}
        steps = max(math.ceil(len(plans[i][0]) / b) for i in active)
        idx = np.zeros((k, steps * b), np.int64)
        var = np.zeros((k, steps * b), np.int64)
        sizes = np.zeros((k, steps), np.int64)
        for i in active:
            s, (pos, variants) = self.slots[i], plans[i]
            idx[s, : len(pos)], var[s, : len(pos)] = pos, variants
            sizes[s] = np.clip(len(pos) - np.arange(steps) * b, 0, b)
        idx_t = torch.as_tensor(idx, device=self.device)
        var_t = torch.as_tensor(var, device=self.device)
        full_t = torch.as_tensor(sizes == b, device=self.device)
        stepped_t = torch.as_tensor(sizes > 0, device=self.device)
        lrs = torch.zeros(k, dtype=torch.float64)
        for i in active:
            lrs[self.slots[i]] = self.members[i].lr
        lrs = lrs.to(self.device)
        loss_sum = torch.zeros(k, dtype=torch.float64, device=self.device)
        probs = torch.zeros(k, steps * b, device=self.device)
        self.packed.train()
        for step in range(steps):
            cols = slice(step * b, (step + 1) * b)
            x = batched_variants(
                self.store[idx_t[:, cols].reshape(-1)],
                var_t[:, cols].reshape(-1),
                self.patch_size,
            ).to(self.dtype)
            x = x.reshape(k, b, *x.shape[1:])
            y = self.labels[idx_t[:, cols]]
            self.opt.zero_grad()
            full = sizes[:, step] == b
            if full.any():
                loss_sum += self._packed_step(x, y, full_t[:, step], full.all(), probs, cols)
            for s in np.flatnonzero((sizes[:, step] > 0) & ~full):
                n = int(sizes[s, step])
                loss_sum[s] += self._member_step(int(s), x[s, :n], y[s, :n], probs, step * b)
            self.opt.step(stepped_t[:, step], lrs)
        counts = sizes.sum(1)
        elapsed = time.perf_counter() - started
        for i in active:
            m = self.members[i]
            s = self.slots[i]
            n = int(counts[s])
            m.global_step += int((sizes[s] > 0).sum())
            train_probs = probs[s, :n].float().cpu()
            train_labels = self.labels[torch.as_tensor(idx[s, :n], device=self.device)].cpu()
            metrics = {"train/loss": float(loss_sum[s]) / n, "lr": m.lr}
            metrics.update(_metrics(m.module, "train", train_probs, train_labels))
            metrics.update(self._validate(m, s))
            self._end_epoch(i, m, metrics)
        print(
            f"packed round: {len(active)} members, {int(counts.sum())} patches in {elapsed:.1f} s "
            f"({counts.sum() / elapsed:.0f} patches/s)"
        )

    def _epoch_plan(self, m: Member) -> tuple[np.ndarray, np.ndarray]:
        """Store positions and variants of a member's epoch, in its datamodule's order."""
        sampler = m.dm.train_dataloader().sampler
        sampler.set_epoch(m.epoch)
        order = np.fromiter((i for i, _ in sampler), dtype=np.int64, count=len(sampler))
        limit = _limit(m.spec.cfg.trainer.get("limit_train_batches"), len(order), self.batch)
        order = order[: limit * self.batch]
        return m.rows[order], m.dm.schedule.variants(order, m.epoch).astype(np.int64)

    def _exact(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits for the loss: float32 under autocast (as Lightning's mixed precision)."""
        return logits.float() if self.autocast is not None else logits

    def _autocast(self):  # noqa: ANN202
        if self.autocast is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def _packed_step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        full: torch.Tensor,
        everyone: bool,
        probs: torch.Tensor,
        cols: slice,
    ) -> torch.Tensor:
        """Forward/backward of the members with a full batch; returns their summed losses."""
        saved = None if everyone else _bn_statistics(self.packed)
        with self._autocast():
            logits = self._exact(self.packed(x))
        losses = _weighted_ce(logits, y, self.weights)
        (losses * full).sum().backward()
        if saved is not None:  # members that sat out keep their batch-norm statistics
            _restore_bn_statistics(self.packed, saved, full)
        probs[:, cols] = logits.detach().softmax(-1)[..., 1]
        return (losses.detach() * full).double() * x.shape[1]

    def _member_step(
        self, s: int, x: torch.Tensor, y: torch.Tensor, probs: torch.Tensor, start: int
    ) -> torch.Tensor:
        """Forward/backward of one member's smaller batch on its views of the pack."""
        self.template.train()
        with self._autocast():
            logits = functional_call(self.template, self.packed.member_tensors(s), (x,))
        logits = self._exact(logits)
        loss = F.cross_entropy(logits, y, weight=self.weights[s])
        loss.backward()
        probs[s, start : start + len(y)] = logits.detach().softmax(-1)[:, 1]
        return loss.detach().double() * len(y)

    # --- evaluation, checkpoints, logs ------------------------------------------------------

    @torch.no_grad()
    def _predict(self, m: Member, rows: np.ndarray, state: dict | None, slot: int | None):  # noqa: ANN202
        """(logits, labels) of original patches ``rows`` in order, batch by batch."""
        self.template.eval()
        tensors = state if state is not None else self.packed.member_tensors(slot)
        out = []
        for start in range(0, len(rows), self.batch):
            part = rows[start : start + self.batch]
            x = center_crop(np.asarray(self.cache.patches[part][:, self.channels]), self.patch_size)
            x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self.dtype)
            with self._autocast():
                out.append(self._exact(functional_call(self.template, tensors, (x,))))
        logits = torch.cat(out) if out else torch.zeros(0, 2, device=self.device)
        labels = torch.as_tensor(
            self.cache.lesions["label"].to_numpy()[rows], dtype=torch.long, device=self.device
        )
        return logits, labels

    def _evaluate(
        self, m: Member, stage: str, rows, state=None, slot=None
    ) -> tuple[dict, np.ndarray]:  # noqa: ANN001
        """Loss (the batch-size-weighted mean of batch losses, as Lightning logs it), AUROC, AP
        and accuracy of ``stage`` (val/test), and the probabilities."""
        logits, labels = self._predict(m, rows, state, slot)
        weight = m.module.ce_weight.to(self.device, logits.dtype)
        losses = [
            F.cross_entropy(logits[i : i + self.batch], labels[i : i + self.batch], weight=weight)
            * len(labels[i : i + self.batch])
            for i in range(0, len(labels), self.batch)
        ]
        prob = logits.softmax(-1)[:, 1].cpu()
        metrics = {f"{stage}/loss": float(sum(losses)) / max(len(labels), 1)}
        metrics.update(_metrics(m.module, stage, prob, labels.cpu()))
        return metrics, prob.numpy()

    def _validate(self, m: Member, slot: int) -> dict:
        rows = m.dm.rows["val"]
        limit = _limit(m.spec.cfg.trainer.get("limit_val_batches"), len(rows), self.batch)
        if not limit:
            return {}
        return self._evaluate(m, "val", rows[: limit * self.batch], slot=slot)[0]

    def _end_epoch(self, i: int, m: Member, metrics: dict) -> None:
        """The staircase, checkpoints and logs of member ``i``'s finished epoch."""
        epoch, val = m.epoch, metrics.get("val/loss")
        action = "continue"
        if m.staircase.fixed_epochs is not None or val is not None:
            action = m.staircase.step(val)
        m.epoch += 1
        m.done = action == "stop" or m.epoch >= m.max_epochs
        state = self.packed.member_state_dict(self.slots[i])
        _set_batch_counts(state, m.global_step)
        self._checkpoints(i, m, epoch, state, metrics)
        for logger in m.loggers:
            logger.log_metrics({**metrics, "epoch": epoch}, step=m.global_step - 1)
            logger.save()
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "lr")
        stop = "  (stop)" if m.done else ""
        print(f"{m.name} epoch {epoch}: {shown}  lr {metrics['lr']:.2g}{stop}")

    def _checkpoints(self, i: int, m: Member, epoch: int, state: dict, metrics: dict) -> None:
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
            self._save(i, m, path, epoch, state)
            if previous and previous != path and Path(previous).is_file():
                Path(previous).unlink()  # our own earlier checkpoint, as ModelCheckpoint does
        if cb.save_last:
            last = str(Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}.ckpt")
            self._save(i, m, last, epoch, state)

    def _save(self, i: int, m: Member, path: str, epoch: int, state: dict) -> None:
        slot = self.slots[i]
        checkpoint = {
            "epoch": epoch,
            "global_step": m.global_step,
            "pytorch-lightning_version": pl.__version__,
            "state_dict": {f"net.{k}": v.cpu() for k, v in state.items()},
            "optimizer_states": [self.opt.member_state(slot, m.lr, self.param_names, self.group)],
            "lr_schedulers": [],
            "callbacks": {"StaircaseLR": m.staircase.state_dict()},
            "hyper_parameters": dict(m.module.hparams),
            CHECKPOINT_KEY: {
                **m.module.inference,
                "network": network_name(RimNet),
                "model": dict(self.packed.config),
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
        with atomic_path(path, replace=mine in self.written) as tmp:
            torch.save(checkpoint, tmp)
        self.written.add(mine)

    def _test(self, i: int, m: Member) -> RunResult:
        """Predictions and metrics of each test set (best or final weights, as the spec says)."""
        state = self._member_final_state(i)
        if m.spec.test_weights == "best":
            if m.best_state is None:
                warnings.warn(
                    f"{m.name}: no best checkpoint; testing the last weights", stacklevel=2
                )
            else:
                state = m.best_state
        cfg = m.spec.cfg
        loader = hydra.utils.instantiate(cfg.data.loader)
        predictions, metrics = {}, {}
        for name, ids in m.spec.test_sets.items():
            test_dm = loader(self.cache, test_ids=ids)
            values, prob = self._evaluate(m, "test", test_dm.rows["test"], state=state)
            predictions[name] = prediction_table(test_dm, np.arange(len(prob)), prob, cfg)
            if not metrics:
                metrics = values
                for logger in m.loggers:
                    logger.log_metrics(values, step=m.global_step)
                    logger.save()
        return RunResult(predictions, metrics, m.staircase)

    def _member_final_state(self, i: int) -> dict:
        if self.slots[i] is not None:
            state = self.packed.member_state_dict(self.slots[i])
        else:
            state = self._final_states[i]
        _set_batch_counts(state, self.members[i].global_step)
        return state


def _limit(limit: float | int | None, n: int, batch: int) -> int:
    """Batches of an epoch of ``n`` items under Lightning's ``limit_*_batches`` (a count, or a
    fraction of the batches)."""
    batches = math.ceil(n / batch)
    if limit is None or (isinstance(limit, float) and limit == 1.0):
        return batches
    if isinstance(limit, float):
        return int(batches * limit)
    return min(int(limit), batches)


def _weighted_ce(logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
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


def _set_batch_counts(state: dict, steps: int) -> None:
    """A member's batch norms have seen one batch per training step of its own."""
    for key in state:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(steps, dtype=torch.long)


def _metrics(module: RimNetModule, stage: str, prob: torch.Tensor, labels: torch.Tensor) -> dict:
    """AUROC, AP and accuracy with the module's own metric objects (as the sequential engine)."""
    if not len(labels):
        return {}
    collection = module.metrics[f"{stage}_metrics"]
    collection.update(prob, labels)
    values = {k: float(v) for k, v in collection.compute().items()}
    collection.reset()
    return values


def _is_wandb(logger: object) -> bool:
    return type(logger).__name__ == "WandbLogger"


def _open_wandb(logger: object) -> None:
    """Give each member's W&B logger a run of its own: Lightning's WandbLogger would reuse the
    process's current run, which would put every member of the pack into one run."""
    if _is_wandb(logger) and logger._experiment is None:
        import wandb

        logger._experiment = wandb.init(**logger._wandb_init, reinit="create_new")
