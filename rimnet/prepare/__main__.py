"""``python -m rimnet.prepare bids=<BIDS root> out=<folder>``: scanner images -> ``cohort.csv``.

Run with ``--help`` for the expected BIDS layout and the options.
"""

import hydra
from omegaconf import DictConfig

from rimnet.config import CONFIG_DIR, register_resolvers
from rimnet.errors import exit_on_error
from rimnet.io import protected
from rimnet.preflight import start
from rimnet.prepare.cohort import config_from, prepare_bids

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="prepare")
@exit_on_error
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    command = " ".join(["rimnet prepare", *HydraConfig.get().overrides.task])
    with protected([cfg.bids]):
        csv = prepare_bids(cfg.bids, cfg.out, config_from(cfg), cfg.progress, command)
    print(f"cohort written: {csv} (report: {csv.parent / 'prepare_report.csv'})")


def main() -> None:
    """The stage's command line (``rimnet prepare``): checked, then run by Hydra."""
    start(hydra_main, "prepare")


if __name__ == "__main__":
    main()
