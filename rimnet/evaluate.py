"""``python -m rimnet.evaluate sweep_dir=<dir> out_dir=<dir>``: Table 3, AUC/DeLong, patient-wise
analysis, error analyses and Figures 3 and 5–10 from a sweep's prediction files."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from rimnet.config import CONFIG_DIR, experiment_catalogue, register_resolvers
from rimnet.errors import exit_on_error
from rimnet.evaluation.report import write_report
from rimnet.evaluation.seeds import seed_folders, write_seed_report
from rimnet.io import protected
from rimnet.preflight import start

register_resolvers()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@exit_on_error
def hydra_main(cfg: DictConfig) -> None:
    if seed_folders(cfg.sweep_dir):  # a study over seeds: a report per seed, tables across them
        with protected([cfg.sweep_dir]):
            summary = write_seed_report(
                cfg.sweep_dir, cfg.out_dir, experiment_catalogue(), cfg.wandb, cfg.n_folds
            )
        print(f"report written to {cfg.out_dir}: {', '.join(summary['files'])}")
        for exp, a in summary["auc"].items():
            ens = a["ensemble_pooled"]
            print(f"  {exp:14s} pooled AUC {a['pooled_mean']:.3f} ± {a['pooled_sd']:.3f} over "
                  f"seeds {summary['seeds']}"
                  + ("" if ens is None else f"; their ensemble {ens:.3f}"))  # fmt: skip
        return
    with protected([cfg.sweep_dir]):
        summary = write_report(
            cfg.sweep_dir,
            cfg.out_dir,
            experiment_catalogue(),
            log_wandb=cfg.wandb,
            n_folds=cfg.n_folds,
        )
    print(f"report written to {cfg.out_dir}: {', '.join(summary['files'])}")
    if summary["missing"]:
        print("missing: " + "; ".join(summary["missing"]))
    for exp, a in summary["auc"].items():
        print(
            f"  {exp:14s} AUC {a['auc_mean_folds']:.3f} (mean of folds), {a['auc_pooled']:.3f} "
            f"(pooled)"
        )


def main() -> None:
    """The stage's command line (``rimnet evaluate``): checked, then run by Hydra."""
    start(hydra_main, "evaluate")


if __name__ == "__main__":
    main()
