"""``python -m rimnet.preprocess cohort=<cohort.csv> cache_dir=<dir>``: build the patch cache.

cohort.csv -> validation -> 6-connected candidates (size rule, labels, location, exclusions)
-> lesion-centred patches normalised to [-1, 1] -> offline augmentation -> cache folder with
``patches.bin``, ``lesions.csv``, ``patients.csv`` and ``meta.json``. Run with ``--help`` for
options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig

from rimnet.config import CONFIG_DIR, register_resolvers
from rimnet.errors import exit_on_error
from rimnet.preflight import start

if TYPE_CHECKING:
    from rimnet.data.cache import PatchCache


def summary(cache: PatchCache) -> str:
    """Human-readable counts of a cache."""
    c = cache.meta["counts"]
    sites = cache.patients["site"].value_counts().sort_index().to_dict()
    return (
        f"cache {cache.path}: {c['patients']} patients, {c['candidates']} candidates, "
        f"{c['patches']} patches "
        f"{tuple(cache.meta['shape'])}; exclusions {c['excluded']}; sites found {sites}"
    )


register_resolvers()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="preprocess")
@exit_on_error
def hydra_main(cfg: DictConfig) -> None:
    from rimnet.data.cache import PreprocessConfig, build_cache  # torch: where work starts

    cache = build_cache(
        cfg.cohort,
        cfg.cache_dir,
        PreprocessConfig.from_config(cfg.params),
        force=cfg.force,
        progress=cfg.progress,
    )
    print(summary(cache))


def main() -> None:
    """The stage's command line (``rimnet preprocess``): checked, then run by Hydra."""
    start(hydra_main, "preprocess")


if __name__ == "__main__":
    main()
