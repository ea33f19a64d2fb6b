"""``python -m rimnet.synth scale=<smoke|default|paper> out=<dir>``: write a synthetic cohort.

Writes ``<out>/cohort.csv`` (the data contract), one folder of NIfTI files per patient and
``truth.csv`` (the generator's per-lesion truth: rim strength, coverage, vein artefacts).
"""

import hydra
from omegaconf import DictConfig

from rimnet.config import CONFIG_DIR, register_resolvers
from rimnet.errors import exit_on_error
from rimnet.synth.cohort import generate_cohort

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="synth")
@exit_on_error
def main(cfg: DictConfig) -> None:
    csv = generate_cohort(cfg.out, cfg.scale, seed=cfg.seed, force=cfg.force, progress=cfg.progress)
    print(f"cohort written: {csv}")


if __name__ == "__main__":
    main()
