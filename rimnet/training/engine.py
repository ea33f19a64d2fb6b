"""One fit-and-test routine for every run (single, nested inner and final, inter-center), and the
engine that runs a job's runs.

A :class:`RunSpec` describes a run: its config (with ``run.dir`` and ``run.stage``), its patients
and the sets to test. Everything is built from the config by Hydra (``_target_``): the
DataModule (``data.loader``), the LightningModule with its network and optimizer (``model``), the
callbacks, the loggers and the trainer. :func:`fit_and_test` returns the test predictions as
DataFrames; :func:`write_predictions` saves them. An engine takes several specs at once, so a
packed engine can train them together.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import pandas as pd
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from rimnet import __version__
from rimnet.data.cache import PatchCache
from rimnet.data.contract import PREDICTION_COLUMNS, context_size
from rimnet.data.datamodule import PatchDataModule
from rimnet.io import atomic_path
from rimnet.training.run import finish_wandb, lightning_resumable, run_config, run_seed
from rimnet.training.schedule import Staircase, StaircaseLR
from rimnet.training.wandb_media import log_test_media

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """One training run.

    Attributes:
        cfg: the run's config (``run.dir`` is its folder, ``run.stage`` part of its identity).
        train_ids / val_ids: patients to train and validate on (no validation: an empty list).
        test_sets: output name → patients to predict after training, e.g.
            ``{"predictions": outer_test, "external_predictions": other_site}``.
        resume: a checkpoint to continue from, or None.
        test_weights: ``"best"`` (the best checkpoint by validation loss) or None (the weights at
            the end of training).
    """

    cfg: DictConfig
    train_ids: list[str]
    val_ids: list[str]
    test_sets: dict[str, list[str]] = field(default_factory=dict)
    resume: str | None = None
    test_weights: str | None = "best"


@dataclass
class RunResult:
    """What a run produced: predictions per test set, the test metrics of the first set, and the
    staircase (epochs spent at each rate; whether the plateau rule stopped it)."""

    predictions: dict[str, pd.DataFrame]
    metrics: dict[str, float]
    staircase: Staircase | None


def instantiate_list(node: DictConfig | None) -> list:
    """Instantiate every entry of a config group that has a ``_target_`` (callbacks, loggers)."""
    return [
        hydra.utils.instantiate(c)
        for c in (node or {}).values()
        if c is not None and "_target_" in c
    ]


def inference_description(cfg: DictConfig) -> dict:
    """What inference needs besides the weights, in plain values (stored in every checkpoint)."""
    pre = OmegaConf.to_container(cfg.data.preprocess, resolve=True)
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    return {
        "format": "rimnet-checkpoint",
        "rimnet_version": __version__,
        "experiment": str(cfg.experiment_name),
        "fold": cfg.fold,
        "stage": str(cfg.run.stage),
        "modalities": list(cfg.modalities),
        "model": {k: v for k, v in net.items() if not k.startswith("_")},
        "patch": {
            "patch_size": pre["patch_size"],
            "context": context_size(pre["patch_size"], pre["max_shift"]),
        },
        "rules": dict(pre["rules"]),
    }


def prediction_table(dm: PatchDataModule, items, probs, cfg: DictConfig) -> pd.DataFrame:
    """One row per tested lesion: the lesion table's columns, the probability, experiment and
    fold."""
    table = dm.table("test")
    rows = (
        table[[c for c in PREDICTION_COLUMNS if c in table.columns]]
        .iloc[items]
        .reset_index(drop=True)
    )
    rows.insert(4, "prob", probs)
    rows["experiment"], rows["fold"] = cfg.experiment_name, cfg.fold
    return rows


def write_predictions(path: str | Path, predictions: pd.DataFrame) -> Path:
    """Save a prediction table atomically."""
    with atomic_path(path) as tmp:
        predictions.to_csv(tmp, index=False)
    return Path(path)


@dataclass
class RunParts:
    """What a run is built from: its data, seed, LightningModule, callbacks and loggers."""

    dm: PatchDataModule
    seed: int
    module: pl.LightningModule
    callbacks: list
    loggers: list


def build_run(spec: RunSpec, cache: PatchCache, note: str = "") -> RunParts:
    """Build one run's parts from its config, seeded by its identity (both engines use this).

    Example:
        >>> parts = build_run(spec, cache)  # doctest: +SKIP
    """
    cfg = spec.cfg
    dm = hydra.utils.instantiate(cfg.data.loader)(
        cache, train_ids=spec.train_ids, val_ids=spec.val_ids
    )
    log.info(
        f"{cfg.experiment_name} fold {cfg.fold} {cfg.run.stage}: {len(dm.rows['train'])} training "
        f"patches, {len(dm.rows['val'])} validation lesions{note}"
    )
    seed = run_seed(cfg.seed, cfg.experiment_name, cfg.fold, cfg.run.stage)
    pl.seed_everything(seed, workers=True, verbose=False)
    module = hydra.utils.instantiate(cfg.model, seed=seed, inference=inference_description(cfg))
    module.balance_classes(dm.table("train")["label"])
    callbacks = instantiate_list(cfg.get("callbacks"))
    return RunParts(dm, seed, module, callbacks, instantiate_list(cfg.get("logger")))


def fit_and_test(spec: RunSpec, cache: PatchCache) -> RunResult:
    """Train one run as its config says, then predict each of its test sets."""
    cfg = spec.cfg
    loader = hydra.utils.instantiate(cfg.data.loader)
    parts = build_run(spec, cache)
    dm, module, loggers = parts.dm, parts.module, parts.loggers
    for logger in loggers:
        logger.log_hyperparams(run_config(cfg))
    trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=parts.callbacks, logger=loggers or False
    )
    try:
        resume = lightning_resumable(spec.resume)
        trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)
        # the schedule as trained: testing the best checkpoint restores the callbacks' state
        staircase = next(
            (
                copy.deepcopy(cb.staircase)
                for cb in trainer.callbacks
                if isinstance(cb, StaircaseLR)
            ),
            None,
        )
        predictions, metrics = {}, {}
        weights = None if cfg.trainer.get("fast_dev_run") else spec.test_weights
        for name, ids in spec.test_sets.items():
            test_dm = loader(cache, test_ids=ids)
            trainer.test(
                module, datamodule=test_dm, ckpt_path=weights, verbose=False, weights_only=True
            )
            predictions[name] = prediction_table(test_dm, *module.test_outputs(), cfg)
            if not metrics:
                metrics = {
                    k: float(v)
                    for k, v in trainer.callback_metrics.items()
                    if k.startswith("test/")
                }
        ckpt = trainer.checkpoint_callback
        tested = ckpt and (ckpt.best_model_path if weights == "best" else ckpt.last_model_path)
        seeds = {"seed": int(cfg.seed), "run_seed": parts.seed}
        first = next(iter(predictions.values()), None)
        if first is not None:
            log_test_media(loggers, first, cache, list(cfg.modalities), seeds, tested or None)
    finally:
        finish_wandb()
    return RunResult(predictions, metrics, staircase)


class SequentialEngine:
    """Trains the runs it is given one after the other (the CPU default).

    Example:
        >>> results = SequentialEngine().run([spec], cache)  # doctest: +SKIP
    """

    def run(self, specs: list[RunSpec], cache: PatchCache) -> list[RunResult]:
        return [fit_and_test(spec, cache) for spec in specs]
