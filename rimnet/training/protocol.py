"""The nested cross-validation job of §2.6: one experiment × one outer fold.

1. Three inner runs (inner folds of the outer training set) train with the plateau staircase; each
   records the epochs it spent at every learning rate.
2. The inner schedules are aggregated into one fixed schedule: the mean epochs per rate, rounded
   to the nearest integer (at least one epoch in total). A job given ``schedule.fixed_epochs``
   has its schedule already and runs no inner runs (a cheaper budget: the final runs only).
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
import logging
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from rimnet.errors import ConfigError
from rimnet.io import atomic_path, claim_folder, fingerprint, write_json
from rimnet.training.checks import check_config
from rimnet.training.engine import RunSpec, write_predictions
from rimnet.training.run import (
    check_network,
    claim_run_folder,
    external_ids,
    prepare_data,
    resume_checkpoint,
    stage_config,
    stale_run_files,
)

log = logging.getLogger(__name__)

# Config entries that cannot change a job's result: where things go, how they are logged, launched
# or scheduled on the hardware. Everything else is part of the job's fingerprint.
NOT_RESULT = {
    "paths": None,
    "hydra": None,
    "logger": None,
    "run": None,
    "force": None,
    "study": None,  # how the evaluation groups the configuration
    "ckpt_path": None,
    "protocol": None,
    "test": None,
    "inner_fold": None,
    "engine": None,
    "callbacks": {"progress_bar": None},
    "data": {"loader": {"num_workers": None}},
}


def _without(d: dict, drop: dict) -> dict:
    return {
        k: (_without(v, drop[k]) if isinstance(drop.get(k), dict) and isinstance(v, dict) else v)
        for k, v in d.items()
        if not (k in drop and drop[k] is None)
    }


def job_fingerprint(cfg: DictConfig) -> str:
    """Hash of everything that decides a job's result (the config less :data:`NOT_RESULT`)."""
    return fingerprint(_without(OmegaConf.to_container(cfg, resolve=True), NOT_RESULT))


def aggregate_schedules(schedules: list[list[int]]) -> list[int]:
    """Fixed schedule from the inner runs: mean epochs per rate, rounded half up, ≥ 1 epoch in
    total.

    Example:
        >>> aggregate_schedules([[5, 3, 3, 3], [7, 4, 3, 3], [6, 3, 4, 3]])
        [6, 3, 3, 3]
    """
    mean = np.mean(np.asarray(schedules, dtype=float), axis=0)
    fixed = [int(np.floor(m + 0.5)) for m in mean]
    if sum(fixed) == 0:
        fixed[0] = 1
    return fixed


def _finished_schedule(run_dir: Path, job_hash: str) -> list[int] | None:
    record = run_dir / "schedule.json"
    if record.exists() and json.loads(record.read_text()).get("fingerprint") == job_hash:
        return json.loads(record.read_text())["epochs_per_rate"]
    return None


def job_schedule(cfg: DictConfig, inner_schedules: list[list[int]]) -> list[int]:
    """The final run's schedule: ``schedule.fixed_epochs`` if the config gives one, else the
    inner runs' schedules aggregated (:func:`aggregate_schedules`)."""
    given = cfg.schedule.get("fixed_epochs")
    return [int(e) for e in given] if given is not None else aggregate_schedules(inner_schedules)


def _inner_specs(cfg: DictConfig, splits: dict, out: Path) -> list[RunSpec]:
    if cfg.schedule.get("fixed_epochs") is not None:
        return []  # the schedule is given: no inner runs to choose it
    specs = []
    for j, ids in enumerate(splits["inner"][cfg.fold]):
        if not ids["train"] or not ids["val"]:
            raise ConfigError(
                f"inner{j} of outer fold {cfg.fold} has {len(ids['train'])} training and "
                f"{len(ids['val'])} "
                f"validation patients: too few patients for "
                f"{cfg.data.outer_folds}x{cfg.data.inner_folds} "
                "nested CV (set data.outer_folds / data.inner_folds lower)"
            )
        run_dir = out / f"inner{j}"
        specs.append(
            RunSpec(
                stage_config(cfg, "inner", f"inner{j}", run_dir),
                ids["train"],
                ids["val"],
                resume=resume_checkpoint(run_dir),
            )
        )
    return specs


def _start_job(cfg: DictConfig, out: Path, job_hash: str) -> dict | None:
    """The finished job's record if it can be skipped; else mark the job as running."""
    job_file = out / "job.json"
    job = json.loads(job_file.read_text()) if job_file.exists() else {}
    if not cfg.get("force") and job.get("fingerprint") == job_hash and job.get("status") == "done":
        return job
    if (
        cfg.get("force") or job.get("fingerprint", job_hash) != job_hash
    ):  # nothing of another config is resumed
        for stale in stale_run_files(out):
            stale.unlink()
    write_json(
        job_file,
        {
            "fingerprint": job_hash,
            "status": "running",
            "experiment": cfg.experiment_name,
            "fold": cfg.fold,
        },
    )
    OmegaConf.save(cfg, out / "resolved_config.yaml", resolve=True)
    return None


@dataclass
class _Job:
    cfg: DictConfig
    out: Path
    job_hash: str


def run_nested_job(cfg: DictConfig) -> dict:
    """Run (or skip, or resume) one nested-CV job into ``cfg.paths.output_dir``."""
    return run_nested_jobs([cfg])[0]


def run_nested_jobs(cfgs: list[DictConfig]) -> list[dict]:
    """Run (or skip, or resume) nested-CV jobs of one configuration together.

    The engine gets every inner run of every unfinished job at once, then every final run: with
    ``engine=packed`` a configuration's 4 outer folds train as a pack of 12 inner members, then a
    pack of 4 final members. Each job writes its folder exactly as when run alone.

    Args:
        cfgs: one config per job (the same configuration, different ``fold`` and output folder).
    """
    records: dict[int, dict] = {}
    jobs: dict[int, _Job] = {}
    for n, cfg in enumerate(cfgs):
        check_config(cfg)
        check_network(cfg)
        out = claim_run_folder(cfg.paths.output_dir)
        job_hash = job_fingerprint(cfg)
        finished = _start_job(cfg, out, job_hash)
        if finished is None:
            jobs[n] = _Job(cfg, out, job_hash)
            continue
        records[n] = finished
        log.info(
            f"{cfg.experiment_name} fold {cfg.fold}: finished earlier with the same config, "
            f"skipped ({out})"
        )
    if jobs:
        records.update(_train_jobs(jobs))
    return [records[n] for n in range(len(cfgs))]


def _train_jobs(jobs: dict[int, _Job]) -> dict[int, dict]:
    first = next(iter(jobs.values())).cfg
    engine = hydra.utils.instantiate(first.engine)
    cache, splits = prepare_data(first)
    inner = {n: _inner_specs(job.cfg, splits, job.out) for n, job in jobs.items()}
    todo = [
        (n, s)
        for n, specs in inner.items()
        for s in specs
        if _finished_schedule(Path(s.cfg.run.dir), jobs[n].job_hash) is None
    ]
    for (n, spec), result in zip(todo, engine.run([s for _, s in todo], cache)):
        write_json(
            Path(spec.cfg.run.dir) / "schedule.json",
            {
                "fingerprint": jobs[n].job_hash,
                "epochs_per_rate": list(result.staircase.epochs_per_rate),
                "stopped_by_plateau": result.staircase.stopped,
                "rates": list(result.staircase.rates),
            },
        )
    schedules, finals = {}, {}
    for n, job in jobs.items():
        schedules[n] = [_finished_schedule(Path(s.cfg.run.dir), job.job_hash) for s in inner[n]]
        finals[n] = _final_spec(job, cache, splits, schedules[n])
    results = dict(zip(finals, engine.run(list(finals.values()), cache)))
    records = {n: _finish_job(jobs[n], schedules[n], results[n]) for n in jobs}
    job = next(iter(jobs.values()))
    if external_ids(job.cfg, cache):  # the inter-center study: once all folds are done
        ensemble_external(job.out.parent, job.cfg.data.outer_folds)
    return records


def _final_spec(job: _Job, cache, splits: dict, inner_schedules: list[list[int]]) -> RunSpec:  # noqa: ANN001
    cfg = job.cfg
    fixed = job_schedule(cfg, inner_schedules)
    source = f"inner schedules {inner_schedules}" if inner_schedules else "given"
    log.info(
        f"{cfg.experiment_name} fold {cfg.fold}: {source} -> fixed schedule {fixed} "
        "(epochs per rate)"
    )
    outer = splits["outer"][cfg.fold]
    test_sets = {"predictions": outer["test"]}
    external = external_ids(cfg, cache)
    if external:
        test_sets["external_predictions"] = external
    final_cfg = stage_config(
        cfg, "final", "final", job.out / "final", schedule={"fixed_epochs": fixed}
    )
    return RunSpec(
        final_cfg,
        outer["train"],
        [],
        test_sets,
        resume=resume_checkpoint(job.out / "final"),
        test_weights=None,
    )


def _finish_job(job: _Job, inner_schedules: list[list[int]], result) -> dict:  # noqa: ANN001
    cfg, out = job.cfg, job.out
    for name, table in result.predictions.items():
        write_predictions(out / f"{name}.csv", table)
    fixed = job_schedule(cfg, inner_schedules)
    n_test = len(result.predictions["predictions"])
    record = {
        "fingerprint": job.job_hash,
        "status": "done",
        "experiment": cfg.experiment_name,
        "fold": cfg.fold,
        "inner_schedules": inner_schedules,
        "fixed_schedule": fixed,
        "test_metrics": result.metrics,
        "n_test_lesions": n_test,
    }
    write_json(
        out / "schedule.json",
        {"inner": inner_schedules, "aggregated": fixed, "rates": list(cfg.schedule.rates)},
    )
    write_json(out / "job.json", record)
    log.info(
        f"{cfg.experiment_name} fold {cfg.fold}: test AUROC "
        f"{result.metrics.get('test/auroc', float('nan')):.3f} "
        f"on {n_test} lesions; folder {out}"
    )
    return record


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
    probs = np.stack(
        [t.set_index("lesion_id").loc[tables[0]["lesion_id"], "prob"].to_numpy() for t in tables]
    )
    ens = tables[0].copy()
    ens["prob"] = probs.mean(0)
    ens["prob_std"] = probs.std(0)
    ens["fold"] = "ensemble"
    path = claim_folder(experiment_dir / "ensemble", "ensemble-predictions") / "predictions.csv"
    with atomic_path(path) as tmp:
        ens.to_csv(tmp, index=False)
    log.info(
        f"inter-center ensemble of {n_folds} fold models on {len(ens)} external lesions: {path}"
    )
    return path
