"""``python -m rimnet.train experiment=phase_flair``: train and test one RimNet configuration.

On first use the configured synthetic cohort is generated and preprocessed (cached afterwards).
The run trains on the outer training set of ``fold`` minus inner fold ``inner_fold`` (validation),
then tests the best checkpoint on the outer test fold and writes ``predictions.csv``
(``inner_fold=null``: the whole outer training set with ``schedule.fixed_epochs``, last weights).
Run with ``--help`` to see the config groups; docs/cli.md lists common overrides.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from rimnet.config import CONFIG_DIR, normalise_overrides, register_resolvers
from rimnet.errors import ConfigError, exit_on_error
from rimnet.io import protected
from rimnet.preflight import (
    completing,
    config_dirs,
    group_choices,
    hydra_help,
    run_folder_problem,
    unknown_key,
)

log = logging.getLogger(__name__)

# torch and Lightning are imported where work starts, so --help, --cfg and config errors answer
# without them.


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training run; returns the test metrics (empty when ``test=false``)."""
    from rimnet.training.checks import check_config

    check_config(cfg)
    from rimnet.training.engine import write_predictions
    from rimnet.training.run import (
        check_network,
        check_resume,
        claim_run_folder,
        external_ids,
        prepare_data,
    )

    check_network(cfg)
    check_resume(cfg)
    out = claim_run_folder(cfg.run.dir)
    cache, splits = prepare_data(cfg)
    test_sets = {"predictions": splits["outer"][cfg.fold]["test"]} if cfg.test else {}
    if cfg.test and external_ids(cfg, cache):
        test_sets["external_predictions"] = external_ids(cfg, cache)
    spec = single_spec(cfg, splits, test_sets)
    OmegaConf.save(spec.cfg, out / "resolved_config.yaml", resolve=True)  # the run as trained
    result = hydra.utils.instantiate(cfg.engine).run([spec], cache)[0]
    for name, table in result.predictions.items():
        write_predictions(out / f"{name}.csv", table)
    if cfg.test:
        m = result.metrics
        log.info(
            f"test AUROC {m.get('test/auroc', float('nan')):.3f}  AP "
            f"{m.get('test/ap', float('nan')):.3f}  "
            f"({len(result.predictions['predictions'])} lesions of outer fold {cfg.fold})"
        )
    log.info(f"run folder: {out}")
    return result.metrics


def single_spec(cfg: DictConfig, splits: dict, test_sets: dict):  # noqa: ANN201 (RunSpec: torch)
    """The run of ``protocol=single``: the outer training set less inner fold ``inner_fold``, the
    best checkpoint tested; with ``inner_fold=null`` the whole outer training set, trained like a
    nested job's final run (fixed schedule, no validation) and its last weights tested."""
    from rimnet.training.engine import RunSpec
    from rimnet.training.run import stage_config

    if cfg.inner_fold is None:
        run_cfg = stage_config(cfg, "final", "single-all", cfg.run.dir)
        train_ids = splits["outer"][cfg.fold]["train"]
        return RunSpec(run_cfg, train_ids, [], test_sets, resume=cfg.ckpt_path, test_weights=None)
    inner = splits["inner"][cfg.fold][cfg.inner_fold]
    return RunSpec(cfg, inner["train"], inner["val"], test_sets, resume=cfg.ckpt_path)


def protocol(cfg: DictConfig) -> str:
    """``single``, ``nested`` or ``cv``; ``auto`` is nested inside a Hydra multirun (a sweep over
    folds is the cross-validation) and single otherwise (one quick train/test run)."""
    if cfg.protocol == "auto":
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        return "nested" if multirun else "single"
    if cfg.protocol not in ("single", "nested", "cv"):
        raise ConfigError(
            f"protocol={cfg.protocol!r} is not allowed: choose auto, single, nested or cv"
        )
    return str(cfg.protocol)


def fold_configs(cfg: DictConfig) -> list[DictConfig]:
    """``protocol=cv``: the nested job of every outer fold, each in the folder a sweep over folds
    would give it (``<paths.sweep_dir>/<experiment>/fold<k>``), so either way skips the other's
    finished jobs."""
    cfgs = []
    for k in range(cfg.data.outer_folds):
        fold_cfg = cfg.copy()
        with open_dict(fold_cfg):
            fold_cfg.fold = k
            fold_cfg.paths.output_dir = str(
                Path(cfg.paths.sweep_dir) / str(cfg.experiment_name) / f"fold{k}"
            )
        cfgs.append(fold_cfg)
    return cfgs


# Launcher plugins are extras: hydra/launcher=<name> -> (plugin module, extra that installs it).
LAUNCHERS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
}


def missing_launcher(overrides: list[str]) -> str | None:
    """The error for a ``hydra/launcher=`` whose plugin is not installed, else None."""
    for override in overrides:
        key, _, name = override.lstrip("+").partition("=")
        if key == "hydra/launcher" and name in LAUNCHERS:
            module, extra = LAUNCHERS[name]
            if not _importable(module):
                return (
                    f"hydra/launcher={name} needs its Hydra plugin, which is not installed: "
                    f"pip install 'rimnet[{extra}]'"
                )
    return None


def unknown_choice(overrides: list[str]) -> str | None:
    """The error for a config-group choice that does not exist (``experiment=typo``,
    ``engine=fast``, ``hydra/launcher=x``), else None; comma lists of ``-m`` sweeps are checked
    item by item, and the folders of ``--config-dir`` and ``hydra.searchpath`` count too."""
    groups = {str(p.relative_to(d)) for d in config_dirs(overrides) for p in d.rglob("*")}
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if not sep or "(" in value:  # no value, or a sweep function such as choice(...)
            continue
        if key == "hydra/launcher":
            choices = ["basic", *LAUNCHERS]
        elif key in groups and not key.endswith(".yaml"):
            choices = group_choices(overrides, key)
        else:
            continue
        for choice in (v.strip() for v in value.strip("[]").split(",")):
            if choice and choice != "null" and choice not in choices:
                return f"{key}={choice} is not a choice: one of {', '.join(choices)}"
    return None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # no hydra_plugins namespace at all
        return False


register_resolvers()


def main() -> None:
    """``python -m rimnet.train`` / ``rimnet train``: accepts ``experiment=`` and
    ``+experiment=``; an unknown choice or a missing launcher extra is an ``error:`` line and
    exit 2 before Hydra starts."""
    overrides = normalise_overrides(sys.argv[1:])
    if hydra_help(overrides, "train"):
        return
    multirun = any(a in ("-m", "--multirun") for a in overrides)
    problem = not completing(overrides) and (
        unknown_choice(overrides)
        or missing_launcher(overrides)
        or run_folder_problem(overrides, multirun)
        or unknown_key(overrides, "train")
    )
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *overrides]
    hydra_main()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@exit_on_error
def hydra_main(cfg: DictConfig) -> float | None:
    user_cohort = [] if cfg.data.synthetic else [cfg.data.cohort]
    with protected([cfg.ckpt_path, cfg.data.splits_file, *user_cohort]):
        return run_protocol(cfg)


def run_protocol(cfg: DictConfig) -> float | None:
    """The job the config asks for; returns the test AUROC (mean over folds for ``cv``)."""
    import numpy as np

    from rimnet.training.checks import check_config

    check_config(cfg)  # before torch and Lightning load: a config error answers at once
    from rimnet.training.protocol import run_nested_job, run_nested_jobs

    kind = protocol(cfg)
    if kind == "cv":
        jobs = run_nested_jobs(fold_configs(cfg))
        return float(np.mean([j.get("test_metrics", {}).get("test/auroc", np.nan) for j in jobs]))
    if kind == "nested":
        return run_nested_job(cfg).get("test_metrics", {}).get("test/auroc")
    return train(cfg).get("test/auroc")


if __name__ == "__main__":
    main()
