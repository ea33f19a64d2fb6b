"""Building blocks of a training job, shared by the single run and the nested-CV protocol."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rimnet.data.cache import PatchCache, PreprocessConfig, build_cache, synthetic_cohort
from rimnet.data.splits import check_splits_file, load_or_make_splits
from rimnet.errors import ConfigError, OwnershipError, UnsafeFileError
from rimnet.io import (
    claim_folder,
    file_lock,
    fingerprint,
    hold_lock,
    lock_for,
    safe_glob,
    safe_load,
)

ENGINE_KEY = "packed_engine"  # the checkpoint entry the packed engine resumes from


def run_seed(seed: int, experiment: str, fold: int | str, stage: str) -> int:
    """The seed of one run: the config's ``seed`` mixed with the run's identity.

    Two runs of the same job draw the same numbers; different runs of a sweep draw different ones.

    Example:
        >>> run_seed(42, "phase_flair", 0, "inner1") == run_seed(42, "phase_flair", 0, "inner1")
        True
    """
    return int(fingerprint([int(seed), str(experiment), str(fold), str(stage)])[:8], 16) % (
        2**31 - 1
    )


def claim_run_folder(path: str | Path) -> Path:
    """Create and mark a run folder; what Hydra wrote there just before (config, log) is allowed."""
    from hydra.core.hydra_config import HydraConfig

    ignore: frozenset[str] = frozenset()
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        ignore = frozenset({str(hc.output_subdir or ".hydra"), f"{hc.job.name}.log"})
    hold_lock(path, "run folder")
    return claim_folder(path, "training-run", "run folder", ignore)


def check_network(cfg: DictConfig) -> None:
    """Build the configured network once, before any data is generated or cached, so that a bad
    ``model.net`` setting is an error at once rather than after minutes of preprocessing."""
    import hydra

    hydra.utils.instantiate(cfg.model.net)


def check_resume(cfg: DictConfig) -> None:
    """``ckpt_path`` must exist, load safely and hold weights that fit the configured network."""
    import hydra

    path = cfg.get("ckpt_path")
    if path is None:
        return
    if not Path(path).is_file():
        raise ConfigError(
            f"ckpt_path={path} does not exist (resume from <run folder>/checkpoints/last.ckpt)"
        )
    ckpt = safe_load(path, "checkpoint (ckpt_path)")
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ConfigError(f"ckpt_path={path} has no state_dict: not a checkpoint of rimnet train")
    expected = {
        f"net.{k}": tuple(v.shape)
        for k, v in hydra.utils.instantiate(cfg.model.net).state_dict().items()
    }
    found = {k: tuple(getattr(v, "shape", ())) for k, v in state.items() if k.startswith("net.")}
    wrong = sorted(k for k in expected.keys() | found.keys() if found.get(k) != expected.get(k))
    if wrong:
        raise ConfigError(
            f"ckpt_path={path} holds weights of another network ({wrong[0]}: "
            f"{found.get(wrong[0])} where model.net gives {expected.get(wrong[0])}); resume with "
            "the model settings it was trained with"
        )


def resume_checkpoint(run_dir: str | Path) -> str | None:
    """``<run_dir>/checkpoints/last.ckpt`` if it exists and loads safely, else None.

    A checkpoint cut short by a kill is set aside as ``last.ckpt.damaged`` (the run then starts
    again from its seed, which gives the same result as a run that never stopped).
    """
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        return None
    try:
        safe_load(last, "checkpoint")
    except UnsafeFileError as exc:
        warnings.warn(f"{exc}; starting the run {run_dir} again from its seed", stacklevel=2)
        last.replace(last.with_name("last.ckpt.damaged"))
        return None
    return str(last)


def lightning_resumable(path: str | Path | None) -> str | None:
    """``path`` if Lightning can resume from it; a checkpoint of the packed engine holds no loop
    state, so the sequential engine starts that run again from its seed (the same result)."""
    if path is None or ENGINE_KEY not in safe_load(path, "checkpoint"):
        return None if path is None else str(path)
    warnings.warn(
        f"{path} was written by the packed engine; engine=sequential starts this run again from "
        "its seed (the same result)",
        stacklevel=2,
    )
    return None


def prepare_data(cfg: DictConfig) -> tuple[PatchCache, dict]:
    """The cache and the nested splits of a job.

    Generates the synthetic cohort if the data config asks for one, builds or reuses the cache, and
    reads or writes the splits file. With ``train_sites`` set (the inter-center study), the splits
    cover only those sites' patients and live in a file of their own. A file lock makes parallel
    sweep jobs wait for the first one to build all this.
    """
    cohort = Path(cfg.data.cohort)
    if not cfg.get("train_sites"):
        check_splits_file(cfg.data.splits_file, cfg.data.outer_folds, cfg.data.inner_folds)
    if cfg.data.synthetic:
        cohort = synthetic_cohort(cohort, cfg.data.scale, cfg.data.synth_seed)
    cache = build_cache(
        cohort, cfg.data.cache_dir, PreprocessConfig.from_config(cfg.data.preprocess)
    )
    patients, splits_file = cache.patients, Path(cfg.data.splits_file)
    if cfg.get("train_sites"):
        patients = patients[patients["site"].isin(list(cfg.train_sites))]
        splits_file = splits_file.with_name(
            f"{splits_file.stem}-{'-'.join(cfg.train_sites)}{splits_file.suffix}"
        )
    with file_lock(lock_for(splits_file)):
        splits = load_or_make_splits(
            splits_file,
            patients,
            cache.lesions,
            cfg.data.outer_folds,
            cfg.data.inner_folds,
            cfg.data.split_seed,
        )
    return cache, splits


def external_ids(cfg: DictConfig, cache: PatchCache) -> list[str]:
    """Patients of ``external_sites`` (the inter-center study's test centre), else none."""
    sites = list(cfg.get("external_sites") or [])
    return cache.patients.loc[cache.patients["site"].isin(sites), "patient_id"].tolist()


def stage_config(
    cfg: DictConfig, kind: str, stage: str, run_dir: str | Path, **values: object
) -> DictConfig:
    """The config of one run of a nested job: the job's config, the overlay ``stages.<kind>``, the
    run's folder and stage name, and ``values`` (e.g. ``schedule={"fixed_epochs": [6, 3, 3, 3]}``).

    Example:
        >>> inner = stage_config(cfg, "inner", "inner1", job_dir / "inner1")  # doctest: +SKIP
    """
    run = {"run": {"stage": stage, "dir": str(run_dir)}}
    base = cfg.copy()
    OmegaConf.set_struct(base, False)  # an overlay may add keys (e.g. trainer.limit_val_batches)
    merged = OmegaConf.merge(base, cfg.stages.get(kind) or {}, run, values)
    OmegaConf.set_struct(merged, True)
    return merged


def run_config(cfg: DictConfig) -> dict:
    """What the loggers record about a run: the whole resolved config (data scale, seed, widths,
    modalities, schedule, ...), less Hydra's own settings."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    return plain


def finish_wandb() -> None:
    """Close the W&B run if one is open (also after a failure)."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


# What a job's runs (inner<j>, final) write and a rerun of another config removes: nothing else.
_RUN_FOLDER = re.compile(r"^(inner\d+|final)$")
_RUN_CKPT = re.compile(r"^(last|best-epoch\d+)(-v\d+)?\.ckpt$")


def stale_run_files(job_dir: Path) -> list[Path]:
    """The schedule records and checkpoints of a job's runs, found without following links and
    limited to the names the tool writes (a user's file is never listed); a run folder or
    checkpoint folder that is a symbolic link is an :class:`OwnershipError`."""
    for pattern in ("*", "*/checkpoints"):
        links = [
            p
            for p in job_dir.glob(pattern)
            if p.is_symlink() and _RUN_FOLDER.match(p.name if pattern == "*" else p.parent.name)
        ]
        if links:
            raise OwnershipError(
                f"job folder {job_dir} holds a symbolic link, {links[0]} -> "
                f"{os.readlink(links[0])}; rimnet never deletes through links: remove the link "
                "or choose another sweep folder"
            )
    found = [*safe_glob(job_dir, "*/schedule.json"), *safe_glob(job_dir, "*/checkpoints/*.ckpt")]
    run_of = {p: p.parent if p.name == "schedule.json" else p.parent.parent for p in found}
    return [
        p
        for p in found
        if _RUN_FOLDER.match(run_of[p].name)
        and (p.name == "schedule.json" or _RUN_CKPT.match(p.name))
    ]
