"""Where the Hydra configs live, the resolvers they use, and what ``conf/experiment/`` holds."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from rimnet.data.contract import MODALITIES

# conf/ beside the package, as an absolute path: entry points find it whether they run as
# `python -m rimnet.<stage>` or are called in-process.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def register_resolvers() -> None:
    """The OmegaConf resolvers the configs use (``len``, ``sum``, ``abspath``, ``dirname``)."""
    resolvers = {
        "len": lambda x: len(x),
        "sum": lambda x: int(sum(x or [])),
        "abspath": lambda p: os.path.abspath(str(p)),
        "dirname": lambda p: os.path.dirname(os.path.abspath(str(p))),
    }
    for name, fn in resolvers.items():
        OmegaConf.register_new_resolver(name, fn, replace=True)


@cache
def experiment_configs() -> dict[str, DictConfig]:
    """Every ``conf/experiment/<name>.yaml``, by name."""
    files = sorted(Path(CONFIG_DIR, "experiment").glob("*.yaml"))
    return {f.stem: OmegaConf.load(f) for f in files}


def _table_order(name: str) -> tuple:
    modalities = list(experiment_configs()[name].modalities)
    return len(modalities), [MODALITIES.index(m) for m in modalities], name


def cv_experiments() -> list[str]:
    """The configurations of the cross-validation (Table 3, Figs 5-8): single modalities first.

    Example:
        >>> cv_experiments()[:3]
        ['phase', 't2star', 'flair']
    """
    names = [n for n, c in experiment_configs().items() if not c.get("train_sites")]
    return sorted(names, key=_table_order)


def inter_center_experiments() -> list[str]:
    """The configurations of the inter-center study (trained on some sites, tested on others)."""
    return sorted(n for n, c in experiment_configs().items() if c.get("train_sites"))
