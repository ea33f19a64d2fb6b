"""The nested cross-validation job of §2.6: one experiment × one outer fold.

1. Three inner runs (inner folds of the outer training set) train with the plateau staircase; each
   records the epochs it spent at every learning rate.
2. The inner schedules are aggregated into one fixed schedule: the mean epochs per rate, rounded
   to the nearest integer (at least one epoch in total).
3. The final model trains on the whole outer training set with that fixed schedule (no validation
   set is held out) and predicts the outer test fold on original patches only.

Folder of a job (stable: ``<sweep dir>/<experiment>/fold<k>``)::

    job.json            fingerprint of the job's config and its status
    inner{0,1,2}/       each inner run: checkpoints/, schedule.json, logs
    final/              the final run: checkpoints/final.ckpt, logs
    schedule.json       inner schedules and the aggregated one
    predictions.csv     one row per outer-test lesion (the CV predictions)
    external_predictions.csv   inter-center study: every lesion of the external site(s)

A finished job whose fingerprint matches is skipped when rerun (``force=true`` reruns it); an
interrupted one resumes: finished inner runs are kept and a run with a ``last.ckpt`` continues.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from rimnet.errors import ConfigError
from rimnet.io import atomic_path, claim_folder, fingerprint, write_json
from rimnet.training.run import (
    check_fold_config,
    claim_run_folder,
    external_ids,
    finish_wandb,
    make_datamodule,
    make_module,
    make_trainer,
    prepare_data,
    resume_checkpoint,
    seed_run,
)

# Config keys that decide a job's result (paths, loggers and launch details do not).
FINGERPRINT_KEYS = ("experiment_name", "modalities", "seed", "fold", "schedule", "class_weights", "model", "train_sites",
                    "external_sites", "channels_last")


def job_fingerprint(cfg: DictConfig) -> str:
    """Hash of everything that decides a job's result."""
    d = OmegaConf.to_container(cfg, resolve=True)
    data = {k: v for k, v in d["data"].items() if k not in ("num_workers",)}
    return fingerprint({"data": data, "max_epochs": d["trainer"].get("max_epochs"), **{k: d.get(k) for k in FINGERPRINT_KEYS},
                        "limits": {k: v for k, v in d["trainer"].items() if k.startswith("limit_")}})


def aggregate_schedules(schedules: list[list[int]]) -> list[int]:
    """Fixed schedule from the inner runs: mean epochs per rate, rounded half up, ≥ 1 epoch in total.

    Example:
        >>> aggregate_schedules([[5, 3, 3, 3], [7, 4, 3, 3], [6, 3, 4, 3]])
        [6, 3, 3, 3]
    """
    mean = np.mean(np.asarray(schedules, dtype=float), axis=0)
    fixed = [int(np.floor(m + 0.5)) for m in mean]
    if sum(fixed) == 0:
        fixed[0] = 1
    return fixed


def _inner_run(cfg: DictConfig, cache, ids: dict, run_dir: Path, key: str, stage: str) -> list[int]:
    if not ids["train"] or not ids["val"]:
        raise ConfigError(f"{stage} of outer fold {cfg.fold} has {len(ids['train'])} training and {len(ids['val'])} validation "
                         f"patients: too few patients for {cfg.data.outer_folds}x{cfg.data.inner_folds} nested CV "
                         "(set data.outer_folds / data.inner_folds lower)")
    done = run_dir / "schedule.json"
    if done.exists() and json.loads(done.read_text()).get("fingerprint") == key:
        return json.loads(done.read_text())["epochs_per_rate"]
    dm = make_datamodule(cfg, cache, ids["train"], ids["val"], [])
    module = make_module(cfg, None, seed=seed_run(cfg, stage))
    trainer = make_trainer(cfg, run_dir, stage=stage)
    trainer.fit(module, datamodule=dm, ckpt_path=resume_checkpoint(run_dir), weights_only=True)
    staircase = next(cb for cb in trainer.callbacks if hasattr(cb, "staircase")).staircase
    epochs = list(staircase.epochs_per_rate)
    write_json(done, {"fingerprint": key, "epochs_per_rate": epochs, "stopped_by_plateau": staircase.stopped,
                      "rates": list(staircase.rates)})
    finish_wandb()
    return epochs


def run_nested_job(cfg: DictConfig) -> dict:
    """Run (or skip, or resume) one nested-CV job into ``cfg.paths.output_dir``."""
    check_fold_config(cfg)
    out = claim_run_folder(cfg.paths.output_dir)
    key = job_fingerprint(cfg)
    job_file = out / "job.json"
    job = json.loads(job_file.read_text()) if job_file.exists() else {}
    if not cfg.get("force") and job.get("fingerprint") == key and job.get("status") == "done":
        print(f"{cfg.experiment_name} fold {cfg.fold}: finished earlier with the same config, skipped ({out})")
        return job
    if cfg.get("force") or job.get("fingerprint", key) != key:  # nothing of another config is resumed
        for stale in [*out.glob("inner*/schedule.json"), *out.glob("*/checkpoints/*.ckpt")]:
            stale.unlink()
    write_json(job_file, {"fingerprint": key, "status": "running", "experiment": cfg.experiment_name, "fold": cfg.fold})
    OmegaConf.save(cfg, out / "resolved_config.yaml", resolve=True)
    cache, splits = prepare_data(cfg)
    outer = splits["outer"][cfg.fold]
    inner_schedules = [_inner_run(cfg, cache, inner, out / f"inner{j}", key, f"inner{j}")
                       for j, inner in enumerate(splits["inner"][cfg.fold])]
    fixed = aggregate_schedules(inner_schedules)
    print(f"{cfg.experiment_name} fold {cfg.fold}: inner schedules {inner_schedules} -> fixed schedule {fixed} (epochs per rate)")

    final_dir = out / "final"
    dm = make_datamodule(cfg, cache, outer["train"], [], outer["test"])
    module = make_module(cfg, out / "predictions.csv", seed=seed_run(cfg, "final"))
    trainer = make_trainer(cfg, final_dir, fixed_epochs=fixed, stage="final", max_epochs=sum(fixed), limit_val_batches=0)
    trainer.fit(module, datamodule=dm, ckpt_path=resume_checkpoint(final_dir), weights_only=True)
    trainer.test(module, datamodule=dm, verbose=False, weights_only=True)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    external = external_ids(cfg, cache)
    if external:
        ext = make_datamodule(cfg, cache, [], [], external)
        module.predictions_path = str(out / "external_predictions.csv")
        trainer.test(module, datamodule=ext, verbose=False, weights_only=True)
    finish_wandb()
    result = {"fingerprint": key, "status": "done", "experiment": cfg.experiment_name, "fold": cfg.fold, "inner_schedules": inner_schedules,
              "fixed_schedule": fixed, "test_metrics": metrics, "n_test_lesions": len(dm.rows["test"])}
    write_json(out / "schedule.json", {"inner": inner_schedules, "aggregated": fixed, "rates": list(cfg.schedule.rates)})
    write_json(job_file, result)
    print(f"{cfg.experiment_name} fold {cfg.fold}: test AUROC {metrics.get('test/auroc', float('nan')):.3f} on "
          f"{len(dm.rows['test'])} lesions; folder {out}")
    if external:
        ensemble_external(out.parent, cfg.data.outer_folds)
    return result


def ensemble_external(experiment_dir: Path, n_folds: int = 4) -> Path | None:
    """Inter-center ensemble: mean of the fold models' probabilities on every external lesion.

    Written to ``<experiment_dir>/ensemble/predictions.csv`` (same columns as the CV predictions,
    ``fold = "ensemble"``, plus ``prob_std`` across the fold models) once all folds are done;
    returns its path, or None while folds are missing.
    """
    files = [experiment_dir / f"fold{k}" / "external_predictions.csv" for k in range(n_folds)]
    if not all(f.exists() for f in files):
        return None
    tables = [pd.read_csv(f, keep_default_na=False) for f in files]
    probs = np.stack([t.set_index("lesion_id").loc[tables[0]["lesion_id"], "prob"].to_numpy() for t in tables])
    ens = tables[0].copy()
    ens["prob"] = probs.mean(0)
    ens["prob_std"] = probs.std(0)
    ens["fold"] = "ensemble"
    path = claim_folder(experiment_dir / "ensemble", "ensemble-predictions") / "predictions.csv"
    with atomic_path(path) as tmp:
        ens.to_csv(tmp, index=False)
    print(f"inter-center ensemble of {n_folds} fold models on {len(ens)} external lesions: {path}")
    return path

