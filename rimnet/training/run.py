"""Building blocks of a training job, shared by the single run and the nested-CV protocol."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from rimnet.data.cache import PatchCache, build_cache
from rimnet.data.datamodule import PatchDataModule
from rimnet.data.splits import load_or_make_splits
from rimnet.preprocess import preprocess_config
from rimnet.synth.cohort import generate_cohort
from rimnet.training.module import RimNetModule


def prepare_cache(cfg: DictConfig) -> PatchCache:
    """Generate the synthetic cohort if the data config asks for one, then build or reuse the cache."""
    cohort = Path(cfg.data.cohort)
    if cfg.data.synthetic:
        cohort = generate_cohort(cohort.parent, cfg.data.scale, seed=cfg.data.synth_seed)
    return build_cache(cohort, cfg.data.cache_dir, preprocess_config(cfg.data.preprocess))


def prepare_splits(cfg: DictConfig, cache: PatchCache) -> dict:
    """The nested splits of this cache (written once to ``data.splits_file``, reused after)."""
    return load_or_make_splits(cfg.data.splits_file, cache.patients, cache.lesions, cfg.data.outer_folds, cfg.data.inner_folds,
                               cfg.data.split_seed)


def make_datamodule(cfg: DictConfig, cache: PatchCache, train_ids, val_ids, test_ids) -> PatchDataModule:
    return PatchDataModule(cache, list(cfg.modalities), train_ids, val_ids, test_ids, batch_size=cfg.data.batch_size,
                           augment=cfg.data.augment, include_offline=cfg.data.include_offline, num_workers=cfg.data.num_workers,
                           seed=cfg.seed, channels_last=cfg.channels_last)


def make_module(cfg: DictConfig, predictions_path: str | Path | None) -> RimNetModule:
    net = hydra.utils.instantiate(cfg.model)
    return RimNetModule(net, lr=cfg.schedule.rates[0], class_weights=cfg.class_weights, experiment=cfg.experiment_name,
                        fold=cfg.fold, predictions_path=None if predictions_path is None else str(predictions_path),
                        channels_last=cfg.channels_last)


def make_trainer(cfg: DictConfig, output_dir: str | Path, schedule_override: dict | None = None, loggers: bool = True,
                 **trainer_overrides) -> pl.Trainer:
    """Trainer with the configured callbacks (checkpoint dir under ``output_dir``) and loggers."""
    callbacks = []
    for name, cb_cfg in (cfg.get("callbacks") or {}).items():
        cb_cfg = OmegaConf.to_container(cb_cfg, resolve=True)
        if name == "model_checkpoint":
            cb_cfg["dirpath"] = str(Path(output_dir) / "checkpoints")
        if name == "staircase" and schedule_override:
            cb_cfg.update(schedule_override)
        callbacks.append(hydra.utils.instantiate(cb_cfg))
    logger = []
    if loggers:
        for lg_cfg in (cfg.get("logger") or {}).values():
            lg_cfg = OmegaConf.to_container(lg_cfg, resolve=True)
            lg_cfg["save_dir"] = str(output_dir)
            logger.append(hydra.utils.instantiate(lg_cfg))
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    trainer_cfg["default_root_dir"] = str(output_dir)
    trainer_cfg.update(trainer_overrides)
    return hydra.utils.instantiate(trainer_cfg, callbacks=callbacks, logger=logger or False)


def finish_wandb() -> None:
    """Close the W&B run if one is open (also after a failure)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()
