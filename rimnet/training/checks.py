"""The checks of a training config before any work: types, ranges, folds and the trainer.

Light on purpose (no torch, no Lightning at import): a config error answers at once.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from rimnet.data.contract import modality_problem
from rimnet.errors import ConfigError


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_config(cfg: DictConfig) -> None:
    """The values a training job relies on, checked before any work with an error that names
    the key, the value and what is allowed (types and ranges; the folds by
    :func:`check_fold_config`)."""
    problems = []
    problems += modality_problems(list(cfg.modalities), list(cfg.data.preprocess.modalities))
    net = cfg.model.get("net") or {}
    widths, fc = list(net.get("widths", [1, 1, 1])), list(net.get("fc", []))
    if len(widths) != 3 or not all(_is_int(w) and w >= 1 for w in widths):
        problems.append(f"model.net.widths={widths} must be three channel counts >= 1")
    if not all(_is_int(h) and h >= 1 for h in fc):
        problems.append(f"model.net.fc={fc} must be hidden sizes >= 1")
    rates = list(cfg.schedule.rates)
    if not rates or not all(isinstance(r, (int, float)) and r > 0 for r in rates):
        problems.append(f"schedule.rates={rates} must be a non-empty list of positive rates")
    if not _is_int(cfg.schedule.patience) or cfg.schedule.patience < 1:
        problems.append(f"schedule.patience={cfg.schedule.patience!r} must be an integer >= 1")
    fixed = cfg.schedule.get("fixed_epochs")
    if fixed is not None and (
        len(fixed) != len(rates) or not all(_is_int(e) and e >= 0 for e in fixed)
    ):
        problems.append(
            f"schedule.fixed_epochs={list(fixed)} must give a whole number of epochs >= 0 for "
            f"each of the {len(rates)} rates"
        )
    batch = cfg.data.loader.get("batch_size")
    if not _is_int(batch) or batch < 1:
        problems.append(f"data.loader.batch_size={batch!r} must be an integer >= 1")
    epochs = cfg.trainer.get("max_epochs")
    if epochs is not None and (not _is_int(epochs) or (epochs < 1 and epochs != -1)):
        problems.append(f"trainer.max_epochs={epochs!r} must be an integer >= 1 (or -1: no cap)")
    weights = cfg.get("class_weights")
    if weights not in (None, "balanced") and not (
        not isinstance(weights, str)
        and len(weights) == 2
        and all(isinstance(w, (int, float)) and w > 0 for w in weights)
    ):
        problems.append(
            f"class_weights={weights!r} must be null, balanced or two positive weights "
            "[w_rim-, w_rim+]"
        )
    for key, least in (("outer_folds", 2), ("inner_folds", 1)):
        n = cfg.data[key]
        if not _is_int(n) or n < least:
            problems.append(f"data.{key}={n!r} must be an integer >= {least}")
    if not _is_int(cfg.seed):
        problems.append(f"seed={cfg.seed!r} must be an integer")
    workers = cfg.data.loader.get("num_workers", 0)
    if not _is_int(workers) or workers < 0:
        problems.append(f"data.loader.num_workers={workers!r} must be an integer >= 0")
    drop = cfg.data.loader.get("modality_dropout", 0.0)
    if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop < 1:
        problems.append(f"data.loader.modality_dropout={drop!r} must be a share in [0, 1)")
    if not problems:  # the trainer is checked as Lightning builds it (imports torch)
        problems += trainer_problems(cfg.trainer)
    if problems:
        raise ConfigError("invalid configuration: " + "; ".join(problems))
    check_fold_config(cfg)


# What Lightning's Trainer accepts as ``precision`` (its documented values).
PRECISIONS = {
    *("64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true"),
    *("16-mixed", "bf16-mixed", "transformer-engine", "transformer-engine-float16"),
}


def modality_problems(modalities: list, stored: list) -> list[str]:
    """What is wrong with the modalities a run trains on, given those its cache stores.

    Example:
        >>> modality_problems(["qsm", "flair"], ["phase", "t2star", "flair"])[0][:41]
        'modalities=[qsm, flair]: qsm is not among'
    """
    shown = f"[{', '.join(map(str, modalities))}]"
    if not modalities or len(set(modalities)) != len(modalities):
        return [f"modalities={shown} must name one or more different image columns"]
    bad = [p for p in map(modality_problem, modalities) if p]
    if bad:
        return [f"modalities={shown}: {'; '.join(bad)}"]
    absent = [m for m in modalities if m not in stored]
    if absent:
        return [
            f"modalities={shown}: {', '.join(absent)} is not among the cached channels "
            f"data.preprocess.modalities=[{', '.join(stored)}] (add it there, e.g. "
            f"data.preprocess.modalities=[{', '.join([*stored, *absent])}]; each is an image "
            "column of cohort.csv)"
        ]
    return []


def trainer_problems(trainer: DictConfig) -> list[str]:
    """Trainer settings that cannot work on this machine or that Lightning would refuse deep in
    a run: an unknown precision, a GPU accelerator without a GPU."""
    import torch

    problems = []
    precision = trainer.get("precision")
    if precision is not None and str(precision) not in PRECISIONS:
        problems.append(
            f"trainer.precision={precision!r} is not one of Lightning's: "
            f"{', '.join(sorted(PRECISIONS))}"
        )
    accelerator = str(trainer.get("accelerator") or "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        problems.append(
            f"trainer.accelerator={accelerator} but this machine has no CUDA GPU that torch can "
            "use (trainer=cpu, or accelerator=auto)"
        )
    elif accelerator == "mps" and not torch.backends.mps.is_available():
        problems.append("trainer.accelerator=mps but this machine has no Apple GPU")
    elif accelerator not in ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"):
        problems.append(f"trainer.accelerator={accelerator!r} is not one of auto, cpu, gpu, mps")
    if not problems:  # the rest as Lightning itself checks it, before any work
        import hydra
        from hydra.errors import InstantiationException

        quiet = [
            logging.getLogger(n) for n in ("pytorch_lightning", "lightning", "lightning.pytorch")
        ]
        levels = [q.level for q in quiet]
        try:
            for q in quiet:
                q.setLevel(logging.ERROR)  # no "GPU available" lines for a mere check
            hydra.utils.instantiate(trainer, logger=False, callbacks=[])
        except InstantiationException as exc:
            cause = exc.__cause__ or exc
            problems.append(f"trainer: Lightning refuses these settings ({cause})")
        finally:
            for q, level in zip(quiet, levels):
                q.setLevel(level)
    return problems


def check_fold_config(cfg: DictConfig) -> None:
    """``fold`` and ``inner_fold`` must name existing folds (a clear error, not an IndexError);
    ``inner_fold=null`` (no validation set) needs a fixed schedule."""
    checks = [("fold", "outer_folds"), ("inner_fold", "inner_folds")]
    if cfg.inner_fold is None:
        if cfg.schedule.get("fixed_epochs") is None:
            raise ConfigError(
                "inner_fold=null trains on the whole outer training set with no validation set "
                "to decay the rate on: give a fixed schedule, e.g. schedule.fixed_epochs=[6,0,0,0]"
            )
        checks.pop()
    for key, folds_key in checks:
        value, n = cfg[key], cfg.data[folds_key]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < n:
            raise ConfigError(
                f"{key}={value!r} is out of range: with data.{folds_key}={n} "
                f"it must be an integer from 0 to {n - 1}"
            )


PACK_PRECISIONS = (None, 32, 64, "32", "64", "32-true", "64-true", "bf16-mixed")
# Trainer keys a pack cannot honour per member, and the values that are harmless.
REFUSED = {
    "accumulate_grad_batches": (None, 1),
    "gradient_clip_val": (None, 0, 0.0),
    "check_val_every_n_epoch": (None, 1),
    "val_check_interval": (None, 1.0),
    "overfit_batches": (None, 0, 0.0),
    "max_steps": (None, -1),
    "min_epochs": (None, 0),
    "max_time": (None,),
    "limit_test_batches": (None, 1.0),
    "devices": (None, 1, "1", "auto", [0]),
    "strategy": (None, "auto"),
    "num_nodes": (None, 1),
}
# Trainer keys a pack honours: given to its Trainer, or kept by each member for itself.
HONOURED = (
    *("_target_", "accelerator", "precision", "deterministic", "benchmark", "fast_dev_run"),
    *("limit_train_batches", "log_every_n_steps", "enable_progress_bar", "enable_model_summary"),
    *("num_sanity_val_steps", "default_root_dir", "max_epochs", "limit_val_batches"),
    *("sync_batchnorm", "detect_anomaly", "profiler", "inference_mode", "use_distributed_sampler"),
)
# Trainer keys each member keeps for itself; the others must agree within a pack (one Trainer).
PER_MEMBER = ("default_root_dir", "max_epochs", "limit_val_batches")


def check_pack(cfg: DictConfig) -> None:
    """Refuse, before any work, what a pack cannot do per member (an ``error:`` naming the key)."""
    from rimnet.models.registry import offers_packing

    target = str(cfg.model.net.get("_target_"))
    problems = []
    if not offers_packing(target):
        problems.append(f"the network {target} does not offer packing (no packed(k) method)")
    if cfg.data.loader.get("augment", "batched") != "batched":
        problems.append(f"data.loader.augment={cfg.data.loader.augment} (packs need batched)")
    if cfg.model.net.get("fusion", "early+late") != "early+late":
        problems.append(f"model.net.fusion={cfg.model.net.fusion} (packs train early+late only)")
    if cfg.trainer.get("precision") not in PACK_PRECISIONS:
        problems.append(
            f"trainer.precision={cfg.trainer.precision} (32, 64 or bf16-mixed; fp16 would "
            "need a loss scaler per member)"
        )
    for key, fine in REFUSED.items():
        value = cfg.trainer.get(key)
        if value is not None and value not in fine:
            problems.append(f"trainer.{key}={value}")
    for name, node in (cfg.get("callbacks") or {}).items():
        target = str((node or {}).get("_target_", ""))
        known = ("ModelCheckpoint", "StaircaseLR", "ProgressBar", "ModelSummary", "Timer")
        if node is not None and not target.endswith(known):
            problems.append(f"callbacks.{name} ({target}) is not run per member")
    if problems:
        raise ConfigError(
            "engine=packed cannot honour " + "; ".join(problems) + ": use engine=sequential"
        )
