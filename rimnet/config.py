"""Where the Hydra configs live, the resolvers they use, and what ``conf/experiment/`` holds."""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rimnet.data.contract import MODALITIES, modality_rank
from rimnet.hardware import cpu_precision
from rimnet.tracking import (  # noqa: F401  (wandb_run re-exported)
    WANDB_SETTINGS,
    wandb_dir,
    wandb_offline,
    wandb_run,
)


def _config_dir() -> str:
    """The top-level ``conf/`` of a source checkout, or the copy an installed wheel carries as
    the package ``rimnet.conf`` (``package-dir`` in pyproject.toml); an absolute path, so entry
    points find it whether they run as ``python -m rimnet.<stage>``, ``rimnet <stage>`` or
    in-process."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "conf", package / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"rimnet's configs are missing: neither {package.parent / 'conf'} "
        f"nor {package / 'conf'} holds train.yaml (a broken install)"
    )


CONFIG_DIR = _config_dir()


@cache
def _paper_patches() -> dict:
    register_resolvers()
    node = OmegaConf.load(Path(CONFIG_DIR, "patches", "paper.yaml"))
    return OmegaConf.to_container(node, resolve=True)


def paper_patches() -> dict:
    """The paper's candidate and patch rules as ``conf/patches/paper.yaml`` sets them: the one
    place their defaults are written (a fresh copy on each call).

    Example:
        >>> paper_patches()["patch_size"], paper_patches()["rules"]["min_volume_mm3"]
        (28, 12.3)
    """
    return copy.deepcopy(_paper_patches())


def register_resolvers() -> None:
    """The OmegaConf resolvers the configs use (``len``, ``sum``, ``abspath``, ``dirname``,
    ``wandb_offline``, ``wandb_setting``, ``wandb_dir``, ``seed_folder``,
    ``builtin_modalities``, ``cpu_precision``)."""
    resolvers = {
        # a ListConfig, not a list: `--cfg job --resolve` resolves in place, which takes no list
        "builtin_modalities": lambda: OmegaConf.create(list(MODALITIES)),
        "len": lambda x: len(x),
        "sum": lambda x: int(sum(x or [])),
        "abspath": lambda p: os.path.abspath(str(p)),
        "dirname": lambda p: os.path.dirname(os.path.abspath(str(p))),
        "wandb_offline": wandb_offline,
        "wandb_setting": lambda key: WANDB_SETTINGS[key],
        "wandb_dir": wandb_dir,
        "seed_folder": lambda on, seed: f"seed{seed}/" if on else "",
        "cpu_precision": lambda: cpu_precision(),
    }
    for name, fn in resolvers.items():
        OmegaConf.register_new_resolver(name, fn, replace=True)


def normalise_overrides(overrides: list[str]) -> list[str]:
    """``+experiment=<name>`` and ``experiment=<name>`` both choose an experiment (the group has a
    null default, so Hydra itself accepts only the second).

    Example:
        >>> normalise_overrides(["+experiment=phase", "seed=1"])
        ['experiment=phase', 'seed=1']
    """
    return [o[1:] if o.startswith("+experiment=") else o for o in overrides]


@cache
def experiment_configs() -> dict[str, DictConfig]:
    """Every ``conf/experiment/<name>.yaml``, by name."""
    files = sorted(Path(CONFIG_DIR, "experiment").glob("*.yaml"))
    return {f.stem: OmegaConf.load(f) for f in files}


def table_order(modalities: list[str], name: str) -> tuple:
    """Sort key of a configuration in tables: fewer modalities first, built-ins by their order."""
    return len(modalities), [modality_rank(m) for m in modalities], name


def _network(name: str) -> str:
    """The network of ``conf/experiment/<name>.yaml``: its ``override /model`` or the default."""
    model = "rimnet"
    for entry in experiment_configs()[name].get("defaults") or []:
        if isinstance(entry, DictConfig) and "override /model" in entry:
            model = entry["override /model"]
    net = OmegaConf.load(Path(CONFIG_DIR, "model", f"{model}.yaml")).net
    return str(net._target_).rsplit(".", 1)[-1]  # the class name: DenseNet3D


def _study(name: str) -> str:
    return str(experiment_configs()[name].get("study") or "paper")


def cv_experiments() -> list[str]:
    """The paper's configurations of the cross-validation (Table 3, Figs 5-8): single modalities
    first (``study: beyond`` files are not among them).

    Example:
        >>> cv_experiments()[:3]
        ['phase', 't2star', 'flair']
    """
    configs = experiment_configs()
    names = [n for n, c in configs.items() if not c.get("train_sites") and _study(n) == "paper"]
    return sorted(names, key=lambda n: table_order(list(configs[n].modalities), n))


def beyond_experiments() -> list[str]:
    """The configurations beyond the paper (``study: beyond``): more modalities, other networks.

    Example:
        >>> beyond_experiments()
        ['densenet_phase_flair', 'resnet_phase_flair', 'phase_t2star_flair']
    """
    configs = experiment_configs()
    names = [n for n in configs if _study(n) == "beyond"]
    return sorted(names, key=lambda n: table_order(list(configs[n].modalities), n))


def inter_center_experiments() -> list[str]:
    """The configurations of the inter-center study (trained on some sites, tested on others)."""
    return sorted(n for n, c in experiment_configs().items() if c.get("train_sites"))


def experiment_catalogue() -> dict[str, dict]:
    """Every configuration of ``conf/experiment/`` as plain values (its modalities, the sites it
    trains on, its study and network): what the evaluation needs to name and order them."""
    return {
        name: {
            "modalities": list(cfg.modalities),
            "train_sites": list(cfg.get("train_sites") or []),
            "study": _study(name),
            "network": _network(name),
        }
        for name, cfg in experiment_configs().items()
    }
