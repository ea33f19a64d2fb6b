"""``python -m rimnet.train +experiment=phase_flair``: train and test one RimNet configuration.

On first use the configured synthetic cohort is generated and preprocessed (cached afterwards).
The run trains on the outer training set of ``fold`` minus inner fold ``inner_fold`` (validation),
then tests the best checkpoint on the outer test fold and writes ``predictions.csv``. Run with
``--help`` to see the config groups; the README lists common overrides.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from rimnet.training.run import finish_wandb, make_datamodule, make_module, make_trainer, prepare_cache, prepare_splits


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job; returns the test metrics (empty when ``test=false``)."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "resolved_config.yaml", resolve=True)
    pl.seed_everything(cfg.seed, workers=True)
    try:
        cache = prepare_cache(cfg)
        splits = prepare_splits(cfg, cache)
        outer = splits["outer"][cfg.fold]
        inner = splits["inner"][cfg.fold][cfg.inner_fold]
        dm = make_datamodule(cfg, cache, inner["train"], inner["val"], outer["test"])
        print(f"{cfg.experiment_name} fold {cfg.fold}: {len(dm.rows['train'])} training patches, "
              f"{len(dm.rows['val'])} validation and {len(dm.rows['test'])} test lesions")
        module = make_module(cfg, out / "predictions.csv")
        trainer = make_trainer(cfg, out)
        trainer.fit(module, datamodule=dm, ckpt_path=cfg.ckpt_path)
        metrics: dict[str, float] = {}
        if cfg.test:
            fast = bool(cfg.trainer.get("fast_dev_run"))
            trainer.test(module, datamodule=dm, ckpt_path=None if fast else "best")
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
            print(f"test AUROC {metrics.get('test/auroc', float('nan')):.3f}  AP {metrics.get('test/ap', float('nan')):.3f}  "
                  f"({len(dm.rows['test'])} lesions of outer fold {cfg.fold})")
        print(f"run folder: {out}")
        return metrics
    finally:
        finish_wandb()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    return metrics.get("test/auroc")


if __name__ == "__main__":
    main()
