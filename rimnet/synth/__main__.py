"""``python -m rimnet.synth scale=<smoke|default|paper> out=<dir> [format=bids]``: write a synthetic
cohort (the data contract), or the same patients as a BIDS dataset for ``rimnet prepare``.

Writes ``<out>/cohort.csv`` (the data contract), one folder of NIfTI files per patient and
``truth.csv`` (the generator's per-lesion truth: rim strength, coverage, vein artefacts).
"""

import hydra
from omegaconf import DictConfig

from rimnet.config import CONFIG_DIR, register_resolvers
from rimnet.errors import exit_on_error
from rimnet.preflight import start
from rimnet.synth.cohort import generate_cohort

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="synth")
@exit_on_error
def hydra_main(cfg: DictConfig) -> None:
    path = generate_cohort(
        cfg.out, cfg.scale, cfg.seed, cfg.force, cfg.progress, fmt=cfg.get("format", "cohort")
    )
    what = "BIDS dataset" if cfg.get("format") == "bids" else "cohort"
    print(f"{what} written: {path}")


def main() -> None:
    """The stage's command line (``rimnet synth``): checked, then run by Hydra."""
    start(hydra_main, "synth")


if __name__ == "__main__":
    main()
