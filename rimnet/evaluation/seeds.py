"""A study over seeds: a sweep folder with one ``seed<s>/`` per seed (``rimnet train -m ...
seed=1,2,3 seed_folders=true``) gets one full report per seed and tables across seeds.

``seeds_auc.csv``: each configuration's pooled and mean-of-folds AUC per seed;
``seeds_summary.csv`` (and ``seeds.md``): their mean, standard deviation, minimum and maximum;
``seeds_delong.csv``: every paired DeLong test of every seed;
``seeds_ensemble_auc.csv`` and ``seeds_ensemble_delong.csv``: the same AUCs and DeLong tests for
the ensemble of the seeds (each lesion's rim+ probability averaged over the seeds' fold models, as
a bundle averages its members).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from rimnet.evaluation.report import Configurations, auc_table, load_predictions, write_report
from rimnet.io import atomic_path, claim_folder, write_json

SEED_FOLDER = re.compile(r"^seed(\d+)$")


def seed_folders(sweep_dir: str | Path) -> dict[int, Path]:
    """The ``seed<s>/`` folders of a sweep, by seed (empty for a sweep of one seed)."""
    root = Path(sweep_dir)
    if not root.is_dir():
        return {}
    found = {}
    for entry in root.iterdir():
        match = SEED_FOLDER.match(entry.name)
        if match and entry.is_dir() and not entry.is_symlink():
            found[int(match.group(1))] = entry
    return dict(sorted(found.items()))


def seed_summary(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean, standard deviation (n - 1), minimum and maximum of each configuration's pooled
    AUC over the seeds, with the mean of the mean-of-folds AUC.

    Example:
        >>> rows = pd.DataFrame({"experiment": ["phase"] * 2, "seed": [1, 2],
        ...                      "auc_pooled": [0.90, 0.94], "auc_mean_folds": [0.91, 0.93]})
        >>> float(seed_summary(rows).loc[0, "pooled_mean"])
        0.92
    """
    g = per_seed.groupby("experiment", sort=False)
    return pd.DataFrame(
        {
            "seeds": g["seed"].count(),
            "pooled_mean": g["auc_pooled"].mean().round(4),
            "pooled_sd": g["auc_pooled"].std(ddof=1).round(4),
            "pooled_min": g["auc_pooled"].min().round(4),
            "pooled_max": g["auc_pooled"].max().round(4),
            "mean_folds_mean": g["auc_mean_folds"].mean().round(4),
        }
    ).reset_index()


def seed_ensemble(preds_by_seed: list[dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Each configuration's ensemble over seeds: the rim+ probability of every lesion averaged
    over the seeds (configurations scored in every seed; lesions scored in every seed).

    Args:
        preds_by_seed: per seed, the predictions per configuration (``lesion_id``, ``prob``, ...).

    Example:
        >>> one = pd.DataFrame({"lesion_id": ["a", "b"], "label": [1, 0], "prob": [0.9, 0.2]})
        >>> two = one.assign(prob=[0.5, 0.4])
        >>> seed_ensemble([{"phase": one}, {"phase": two}])["phase"]["prob"].tolist()
        [0.7, 0.3]
    """
    if not preds_by_seed:
        return {}
    shared = set.intersection(*(set(preds) for preds in preds_by_seed))
    out = {}
    for exp in (e for e in preds_by_seed[0] if e in shared):
        frames = [preds[exp].set_index("lesion_id") for preds in preds_by_seed]
        probs = pd.concat([f["prob"] for f in frames], axis=1, join="inner")
        first = frames[0].loc[probs.index].reset_index()
        out[exp] = first.assign(prob=probs.mean(axis=1).round(6).to_numpy())
    return out


def write_seed_report(
    sweep_dir: str | Path,
    out_dir: str | Path,
    catalogue: dict[str, dict],
    log_wandb: bool = False,
    n_folds: int = 4,
) -> dict:
    """One report per seed in ``out_dir/seed<s>/`` and the tables across seeds; returns the
    summary (``seeds``, ``files``, ``auc`` per configuration as mean and sd)."""
    seeds = seed_folders(sweep_dir)
    out = claim_folder(out_dir, "evaluation-report", "report folder (out_dir)")
    aucs, pairs, missing, preds_by_seed = [], [], [], []
    configs = Configurations(catalogue)
    for seed, folder in seeds.items():
        report = write_report(folder, out / f"seed{seed}", catalogue, log_wandb, n_folds)
        configs = configs.with_runs(folder)
        preds_by_seed.append(load_predictions(folder, configs, n_folds)[0])
        missing += [f"seed {seed}: {m}" for m in report["missing"]]
        aucs.append(pd.read_csv(out / f"seed{seed}" / "auc.csv").assign(seed=seed))
        try:
            pairs.append(pd.read_csv(out / f"seed{seed}" / "delong_pairs.csv").assign(seed=seed))
        except pd.errors.EmptyDataError:  # no pair of configurations in this seed's sweep
            pass
    per_seed = pd.concat(aucs, ignore_index=True)[
        ["experiment", "seed", "auc_pooled", "auc_mean_folds"]
    ]
    summary = seed_summary(per_seed)
    ensemble_auc, ensemble_pairs = auc_table(seed_ensemble(preds_by_seed), configs)
    tables = {
        "seeds_auc.csv": per_seed,
        "seeds_summary.csv": summary,
        "seeds_ensemble_auc.csv": ensemble_auc,
        "seeds_ensemble_delong.csv": ensemble_pairs,
    }
    if pairs:
        tables["seeds_delong.csv"] = pd.concat(pairs, ignore_index=True)
    ensemble = ensemble_auc.set_index("experiment") if len(ensemble_auc) else None
    for name, table in tables.items():
        with atomic_path(out / name) as tmp:
            table.to_csv(tmp, index=False)
    with atomic_path(out / "seeds.md") as tmp:
        tmp.write_text(
            f"# AUC over {len(seeds)} seeds ({', '.join(map(str, seeds))})\n\n"
            "Pooled AUC over the test folds: mean ± sd (min-max); per-seed reports in seed<s>/.\n\n"
            "The ensemble averages each lesion's rim+ probability over the seeds' fold models.\n\n"
            "| configuration | seeds | pooled AUC | mean of folds | ensemble: pooled | "
            "ensemble: mean of folds |\n|---|---|---|---|---|---|\n"
            + "".join(
                f"| {r.experiment} | {r.seeds} | {r.pooled_mean:.3f} ± {r.pooled_sd:.3f} "
                f"({r.pooled_min:.3f}-{r.pooled_max:.3f}) | {r.mean_folds_mean:.3f} | "
                + _ensemble_cells(ensemble, r.experiment)
                + " |\n"
                for r in summary.itertuples()
            )
        )
    result = {
        "seeds": list(seeds),
        "missing": missing,
        "auc": {
            r.experiment: {
                "pooled_mean": r.pooled_mean,
                "pooled_sd": r.pooled_sd,
                "ensemble_pooled": None
                if ensemble is None or r.experiment not in ensemble.index
                else float(ensemble.loc[r.experiment, "auc_pooled"]),
            }
            for r in summary.itertuples()
        },
        "files": sorted([*tables, "seeds.md", *(f"seed{s}/" for s in seeds)]),
    }
    write_json(out / "seeds.json", result)
    return result


def _ensemble_cells(ensemble: pd.DataFrame | None, experiment: str) -> str:
    """The ensemble's pooled and mean-of-folds AUC as two table cells ("-" where not scored in
    every seed)."""
    if ensemble is None or experiment not in ensemble.index:
        return "- | -"
    row = ensemble.loc[experiment]
    return f"{row.auc_pooled:.3f} | {row.auc_mean_folds:.3f}"
