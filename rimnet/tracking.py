"""W&B runs outside training (evaluation, predict) and the project's offline default."""

from __future__ import annotations

import os
from pathlib import Path

# Patient waits: on a busy shared machine W&B's service starts slowly (its defaults, 30 s for
# the service and 90 s for init, made runs fail under load); conf/logger/wandb.yaml reads them.
WANDB_SETTINGS = {"init_timeout": 600, "x_service_wait": 300}


def wandb_offline() -> bool:
    """W&B runs offline unless ``WANDB_MODE`` asks for online (or disabled, which W&B then
    honours itself)."""
    return os.environ.get("WANDB_MODE", "offline") in ("offline", "dryrun")


def wandb_run(group: str, name: str, folder: Path, config: dict):
    """A W&B run of project ``rimnet`` outside training (``evaluation``, ``predict``): its files
    under ``folder/wandb``, offline as :func:`wandb_offline` decides, a new run per call."""
    import wandb

    return wandb.init(
        project="rimnet",
        group=group,
        job_type=group,
        name=name,
        dir=str(folder),
        mode="offline" if wandb_offline() else None,
        config=config,
        reinit="create_new",
        settings=wandb.Settings(**WANDB_SETTINGS),
    )


def wandb_dir(run_dir: str) -> str:
    """Where a training run keeps its W&B files: the sweep folder under ``rimnet train -m``
    (one ``wandb/`` for all its jobs), else the run folder."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return str(hydra_cfg.sweep.dir)
    except (ImportError, ValueError):  # no Hydra run (tests, API use)
        pass
    return str(run_dir)
