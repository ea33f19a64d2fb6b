"""``python -m rimnet.train +experiment=phase_flair``: train and test one RimNet configuration.

On first use the configured synthetic cohort is generated and preprocessed (cached afterwards).
The run trains on the outer training set of ``fold`` minus inner fold ``inner_fold`` (validation),
then tests the best checkpoint on the outer test fold and writes ``predictions.csv``. Run with
``--help`` to see the config groups; the README lists common overrides.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from rimnet import CONFIG_DIR
from rimnet.errors import ConfigError, exit_on_error
from rimnet.training.protocol import run_nested_job
from rimnet.training.run import (
    check_fold_config,
    claim_run_folder,
    external_ids,
    finish_wandb,
    make_datamodule,
    make_module,
    make_trainer,
    prepare_data,
    seed_run,
)


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job; returns the test metrics (empty when ``test=false``)."""
    check_fold_config(cfg)
    if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
        raise ConfigError(f"ckpt_path={cfg.ckpt_path} does not exist (resume from <run folder>/checkpoints/last.ckpt)")
    out = claim_run_folder(cfg.paths.output_dir)
    OmegaConf.save(cfg, out / "resolved_config.yaml", resolve=True)
    try:
        cache, splits = prepare_data(cfg)
        outer = splits["outer"][cfg.fold]
        inner = splits["inner"][cfg.fold][cfg.inner_fold]
        dm = make_datamodule(cfg, cache, inner["train"], inner["val"], outer["test"])
        print(f"{cfg.experiment_name} fold {cfg.fold}: {len(dm.rows['train'])} training patches, "
              f"{len(dm.rows['val'])} validation and {len(dm.rows['test'])} test lesions")
        seed = seed_run(cfg, f"single-inner{cfg.inner_fold}")
        module = make_module(cfg, out / "predictions.csv", seed=seed)
        trainer = make_trainer(cfg, out)
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.ckpt_path, weights_only=True)
        metrics: dict[str, float] = {}
        if cfg.test:
            fast = bool(cfg.trainer.get("fast_dev_run"))
            trainer.test(module, datamodule=dm, ckpt_path=None if fast else "best", weights_only=True)
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
            print(f"test AUROC {metrics.get('test/auroc', float('nan')):.3f}  AP {metrics.get('test/ap', float('nan')):.3f}  "
                  f"({len(dm.rows['test'])} lesions of outer fold {cfg.fold})")
            external = external_ids(cfg, cache)
            if external:
                module.predictions_path = str(out / "external_predictions.csv")
                trainer.test(module, datamodule=make_datamodule(cfg, cache, [], [], external),
                             ckpt_path=None if fast else "best", weights_only=True)
        print(f"run folder: {out}")
        return metrics
    finally:
        finish_wandb()


def use_nested(cfg: DictConfig) -> bool:
    """``protocol``: ``nested`` or ``single``; ``auto`` is nested inside a Hydra multirun (a sweep
    over folds is the cross-validation) and single otherwise (one quick train/test run)."""
    if cfg.protocol == "auto":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.protocol not in ("single", "nested"):
        raise ConfigError(f"protocol={cfg.protocol!r} is not allowed: choose auto, single or nested")
    return cfg.protocol == "nested"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_error
def main(cfg: DictConfig) -> float | None:
    if use_nested(cfg):
        try:
            return run_nested_job(cfg).get("test_metrics", {}).get("test/auroc")
        finally:
            finish_wandb()
    return train(cfg).get("test/auroc")


if __name__ == "__main__":
    main()
