"""Table 3, the AUC/DeLong table, patient-wise and error tables, and Figures 3 and 5–10 from a sweep
folder.

A sweep folder holds ``<experiment>/fold<k>/predictions.csv`` (cross-validation) and, for the
inter-center study, ``ics_phase_flair/ensemble/predictions.csv``. Missing configurations are
listed in the report, never invented. Configurations beyond the paper (more modalities, other
networks, a user's own) are read from their runs and reported beside the paper's, each tested
against RimNet (phase + FLAIR) on the same lesions.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from rimnet.data.contract import modality_label, modality_rank
from rimnet.errors import RimnetError
from rimnet.evaluation import analysis
from rimnet.evaluation.stats import delong_ci, delong_test
from rimnet.figures import curves, lesions, patients
from rimnet.io import atomic_path, claim_folder, write_json
from rimnet.tracking import wandb_run

# Where Table 3's rows come from (the paper's table; the experiment list itself is
# conf/experiment/).
TABLE3_SINGLE, TABLE3_RIMNET, ICS_EXPERIMENT = "phase", "phase_flair", "ics_phase_flair"
# Barquero et al. 2020, Table 3 and §3.1 (percent; AUCs as fractions).
PAPER_TABLE3 = {
    ("cv", "Single phase model"): [91.3, 57.6, 62.1, 95.0, 53.9, 96.3],
    ("cv", "RimNet: phase + FLAIR"): [94.6, 63.0, 70.6, 94.9, 56.9, 97.1],
    ("cv", "Expert #1"): [97.9, 86.4, 77.9, 99.8, 97.0, 97.9],
    ("cv", "Expert #2"): [97.8, 85.6, 77.5, 99.7, 96.5, 97.9],
    ("ics", "RimNet: phase + FLAIR"): [93.8, 62.3, 75.8, 95.1, 52.8, 98.3],
    ("ics", "Expert #1"): [98.7, 89.6, 83.9, 99.8, 96.2, 98.8],
    ("ics", "Expert #2"): [98.1, 84.7, 77.9, 99.6, 92.8, 98.4],
}
PAPER_AUC = {
    "phase": 0.913,
    "t2star": 0.901,
    "flair": 0.855,
    "phase_flair": 0.946,
    "phase_t2star": 0.943,
    "t2star_flair": 0.926,
    ICS_EXPERIMENT: 0.953,
}
PREDICTION_REQUIRED = ("lesion_id", "patient_id", "label", "prob")
METRICS = ["accuracy", "f1", "sensitivity", "specificity", "ppv", "npv"]
CHRONIC_ACTIVE = 4  # rim+ lesions that make a patient chronic active (the paper's Fig. 8)


class Configurations:
    """The configurations of a study, by name: their modalities, the sites they train on, their
    study (``paper`` or ``beyond``) and network (given by the caller, e.g.
    ``rimnet.config.experiment_catalogue()``, and completed from a sweep's runs by
    :meth:`with_runs`).

    Example:
        >>> c = Configurations({"phase": {"modalities": ["phase"]},
        ...                     "qsm_flair": {"modalities": ["qsm", "flair"], "study": "beyond"}})
        >>> c.cv(), c.beyond(), c.label("phase"), c.label("qsm_flair")
        (['phase'], ['qsm_flair'], 'Single: phase', 'RimNet: qsm + FLAIR')
    """

    def __init__(self, catalogue: dict[str, dict]) -> None:
        self.catalogue = {
            name: {
                "modalities": list(entry["modalities"]),
                "train_sites": list(entry.get("train_sites") or []),
                "study": str(entry.get("study") or "paper"),
                "network": str(entry.get("network") or "RimNet"),
            }
            for name, entry in catalogue.items()
        }

    def with_runs(self, sweep_dir: str | Path) -> Configurations:
        """These configurations and those of the sweep's runs (each ``<name>/fold*/`` or
        ``<name>/ensemble/`` with a ``resolved_config.yaml``), read from the runs themselves: a
        configuration that is not among the given ones counts as beyond the paper."""
        catalogue = dict(self.catalogue)
        for folder in sorted(p for p in Path(sweep_dir).glob("*") if p.is_dir()):
            runs = sorted(folder.glob("fold*/resolved_config.yaml"))
            if not runs or folder.name in catalogue:
                continue
            cfg = load_job_config(runs[0])
            catalogue[folder.name] = {
                "modalities": list(cfg.modalities),
                "train_sites": list(cfg.get("train_sites") or []),
                "study": "beyond",
                "network": str(cfg.model.net._target_).rsplit(".", 1)[-1],  # class name
            }
        return Configurations(catalogue)

    def modalities(self, name: str) -> list[str]:
        return self.catalogue[name]["modalities"]

    def _order(self, name: str) -> tuple:
        mods = self.modalities(name)
        network = self.catalogue[name]["network"]
        return network != "RimNet", len(mods), [modality_rank(m) for m in mods], name

    def _cross_validated(self, study: str) -> list[str]:
        names = [
            n for n, e in self.catalogue.items() if not e["train_sites"] and e["study"] == study
        ]
        return sorted(names, key=self._order)

    def cv(self) -> list[str]:
        """The paper's cross-validation configurations (Table 3, Figs 5-8): single modalities
        first."""
        return self._cross_validated("paper")

    def beyond(self) -> list[str]:
        """Cross-validation configurations beyond the paper: RimNet with other modalities first,
        then other networks."""
        return self._cross_validated("beyond")

    def ics(self) -> list[str]:
        """Inter-center configurations (trained on some sites, tested on others)."""
        return sorted(n for n, e in self.catalogue.items() if e["train_sites"])

    def label(self, name: str) -> str:
        """Display name from the network and modalities: ``RimNet: phase + FLAIR``,
        ``DenseNet3D: phase + FLAIR``."""
        mods = self.modalities(name)
        names = " + ".join(modality_label(m) for m in mods)
        kind = self.catalogue[name]["network"]
        kind = "Single" if kind == "RimNet" and len(mods) == 1 else kind
        return f"{'ICS ' if self.catalogue[name]['train_sites'] else ''}{kind}: {names}"


def load_predictions(
    sweep_dir: str | Path, configs: Configurations, n_folds: int = 4
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Predictions per configuration (CV folds concatenated; the ICS ensemble) and what is
    missing."""
    sweep_dir = Path(sweep_dir)
    found, missing = {}, []
    for exp in configs.cv() + configs.beyond():
        files = sorted((sweep_dir / exp).glob("fold*/predictions.csv"))
        if not files and exp in configs.beyond():
            continue  # a study beyond the paper is optional: only a partial one is missing
        if files:
            for config in (f.parent / "resolved_config.yaml" for f in files):
                if config.exists():
                    load_job_config(config)
            found[exp] = pd.concat([read_predictions(f) for f in files], ignore_index=True)
            if len(files) < n_folds:
                missing.append(f"{exp}: only {len(files)} of {n_folds} folds found")
        else:
            missing.append(f"{exp}: no predictions")
    for exp in configs.ics():
        ens = sweep_dir / exp / "ensemble" / "predictions.csv"
        if ens.exists():
            found[exp] = read_predictions(ens)
        else:
            missing.append(f"{exp}: no ensemble predictions")
    return found, missing


def load_job_config(path: Path) -> DictConfig:
    """A job's ``resolved_config.yaml``; one that is not plain YAML (a ``!!python`` tag, a
    broken file) is refused with a :class:`RimnetError`, never constructed."""
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # a YAML tag OmegaConf does not construct, a broken file
        first = (str(exc).splitlines() or [""])[0][:120]
        raise RimnetError(
            f"{path} is not a plain YAML config rimnet wrote ({type(exc).__name__}: {first}); "
            "rimnet does not load it"
        ) from None
    if not isinstance(cfg, DictConfig):
        raise RimnetError(f"{path} is not a config rimnet wrote (not a mapping)")
    return cfg


def read_predictions(path: Path) -> pd.DataFrame:
    """One ``predictions.csv``, checked: readable, with :data:`PREDICTION_REQUIRED` columns,
    probabilities in [0, 1] and labels 0 or 1 (a clear error naming the file otherwise)."""
    try:
        pred = pd.read_csv(path, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise RimnetError(
            f"predictions file {path} cannot be read as a table ({type(exc).__name__}); "
            "train that job again (force=true)"
        ) from None
    missing = [c for c in PREDICTION_REQUIRED if c not in pred.columns]
    if missing or pred.empty:
        what = f"has no column {', '.join(missing)}" if missing else "holds no lesion"
        raise RimnetError(f"predictions file {path} {what}; train that job again (force=true)")
    prob = pd.to_numeric(pred["prob"], errors="coerce")
    label = pd.to_numeric(pred["label"], errors="coerce")
    bad_prob = ~prob.between(0, 1)  # NaN counts as outside
    bad_label = ~label.isin([0, 1])
    for bad, column, allowed in ((bad_prob, "prob", "in [0, 1]"), (bad_label, "label", "0 or 1")):
        if bad.any():
            values = pred.loc[bad, column].astype(str).unique()[:3].tolist()
            raise RimnetError(
                f"predictions file {path}: {int(bad.sum())} row(s) have {column} not "
                f"{allowed} (e.g. {values}); train that job again (force=true)"
            )
    return pred.assign(prob=prob.astype(float), label=label.astype(int))


def _table3_rows(pred: pd.DataFrame, name: str, section: str) -> list[dict]:
    op = analysis.apply_operating_point(pred)
    t = analysis.lesion_table(op)
    names = {"model": name, "rater1": "Expert #1", "rater2": "Expert #2"}
    rows = []
    for who, r in t.iterrows():
        row = {
            "section": section,
            "row": names[who],
            **{m: 100 * r[m] for m in METRICS},
            "p_vs_expert1": r.get("p_vs_rater1", np.nan),
            "p_vs_expert2": r.get("p_vs_rater2", np.nan),
        }
        paper = PAPER_TABLE3.get((section, names[who]))
        row.update({f"paper_{m}": v for m, v in zip(METRICS, paper)} if paper else {})
        rows.append(row)
    return rows


def table3(preds: dict[str, pd.DataFrame], configs: Configurations | None = None) -> pd.DataFrame:
    """Lesion-wise results at the 95 %-specificity operating point (Table 3): models, then
    experts; then the inter-center study and the configurations beyond the paper."""
    models, experts = [], []
    for exp, name in (
        (TABLE3_SINGLE, "Single phase model"),
        (TABLE3_RIMNET, "RimNet: phase + FLAIR"),
    ):
        if exp in preds:
            rows = _table3_rows(preds[exp], name, "cv")
            models.append(rows[0])
            experts = experts or rows[1:]
    ics = (
        _table3_rows(preds[ICS_EXPERIMENT], "RimNet: phase + FLAIR", "ics")
        if ICS_EXPERIMENT in preds
        else []
    )
    beyond = [
        _table3_rows(preds[e], configs.label(e), "beyond")[0]
        for e in (configs.beyond() if configs else [])
        if e in preds
    ]
    return pd.DataFrame(models + experts + ics + beyond)


def _paired(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    return a[["lesion_id", "label", "prob"]].merge(
        b[["lesion_id", "prob"]], on="lesion_id", suffixes=("_a", "_b")
    )


def auc_table(
    preds: dict[str, pd.DataFrame], configs: Configurations
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """AUC per configuration (mean of folds, pooled with DeLong 95 % CI; the paper's, then those
    beyond it), DeLong p against RimNet (phase + FLAIR) on the lesions both scored, and DeLong p
    for every pair."""
    rows, pairs = [], []
    exps = [e for e in configs.cv() + configs.beyond() if e in preds]
    for e in exps:
        mc = analysis.mean_curves(preds[e])
        lo, auc, hi = delong_ci(preds[e]["label"], preds[e]["prob"])
        vs_rimnet = np.nan
        if e != TABLE3_RIMNET and TABLE3_RIMNET in preds:
            m = _paired(preds[e], preds[TABLE3_RIMNET])
            vs_rimnet = delong_test(m["label"], m["prob_a"], m["prob_b"]).p_value
        rows.append(
            {
                "configuration": configs.label(e),
                "experiment": e,
                "study": configs.catalogue[e]["study"],
                "auc_mean_folds": mc.auc,
                "auc_pooled": auc,
                "ci_low": lo,
                "ci_high": hi,
                "ap_mean_folds": mc.ap,
                "p_vs_rimnet": vs_rimnet,
                "paper_auc": PAPER_AUC.get(e),
            }
        )
    for a, b in itertools.combinations(exps, 2):
        m = _paired(preds[a], preds[b])
        r = delong_test(m["label"], m["prob_a"], m["prob_b"])
        pairs.append(
            {
                "a": a,
                "b": b,
                "auc_a": r.auc_a,
                "auc_b": r.auc_b,
                "z": r.z,
                "p_value": r.p_value,
                "n_lesions": len(m),
            }
        )
    return pd.DataFrame(rows), pd.DataFrame(pairs)


def _fmt_p(p: float) -> str:
    if p != p:
        return ""
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def table3_markdown(t3: pd.DataFrame) -> str:
    lines = [
        "| Lesion-wise results | Accuracy | F1 | Sensitivity | Specificity | PPV | NPV | P vs #1 "
        "| P vs #2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    sections = (
        ("cv", "Cross-validation evaluation"),
        ("ics", "Inter-center study"),
        ("beyond", "Beyond the paper (cross-validation)"),
    )
    for section, title in sections:
        sub = t3[t3["section"] == section] if len(t3) else t3  # no phase nor RimNet: no rows
        if sub.empty:
            continue
        lines.append(f"| **{title}** | | | | | | | | |")
        for _, r in sub.iterrows():
            cells = []
            for m in METRICS:
                paper = r.get(f"paper_{m}")
                cells.append(
                    f"{r[m]:.1f}"
                    + (f" ({paper:.1f})" if paper == paper and paper is not None else "")
                )
            lines.append(
                f"| {r['row']} | "
                + " | ".join(cells)
                + f" | {_fmt_p(r['p_vs_expert1'])} | {_fmt_p(r['p_vs_expert2'])} |"
            )
    lines.append(
        "\nIn parentheses: the paper's Table 3. Operating point: 95 % specificity, threshold "
        "chosen per test fold."
    )
    return "\n".join(lines)


def figure5(
    preds: dict[str, pd.DataFrame], path: Path, configs: Configurations, beyond: bool = False
) -> None:
    """Fig. 5 of the paper's cross-validation configurations found in ``preds``; ``beyond``:
    the same figure of the configurations beyond the paper, beside RimNet (phase + FLAIR)."""
    names = [TABLE3_RIMNET, *configs.beyond()] if beyond else configs.cv()
    present = [e for e in names if e in preds]
    title = (
        "Beyond the paper: mean ROC and PR over the test folds, beside RimNet (phase + FLAIR)"
        if beyond
        else curves.FIG5_TITLE
    )
    curves.figure5({configs.label(e): analysis.mean_curves(preds[e]) for e in present}, path, title)


def figure6(preds: dict[str, pd.DataFrame], path: Path) -> dict | None:
    """Fig. 6: the inter-center ensemble against cross-validated RimNet on the same (Lausanne)
    lesions, with DeLong's test; returns the test (None without both configurations)."""
    if ICS_EXPERIMENT not in preds or TABLE3_RIMNET not in preds:
        return None
    ics = preds[ICS_EXPERIMENT]
    cv = preds[TABLE3_RIMNET][preds[TABLE3_RIMNET]["lesion_id"].isin(ics["lesion_id"])]
    m = _paired(ics, cv)
    test = delong_test(m["label"], m["prob_a"], m["prob_b"]) if m["label"].nunique() == 2 else None
    drawn = {}
    for name, p in (("ICS: trained on Basel, ensemble", ics), ("CV: trained on both centres", cv)):
        if p["label"].nunique() == 2:
            drawn[name] = (
                analysis.GRID,
                analysis.roc_on_grid(p["label"], p["prob"]),
                analysis.pr_on_grid(p["label"], p["prob"]),
                analysis.mean_curves(p.assign(fold=0)).auc,
            )
    curves.figure6(drawn, None if test is None else test.p_value, path)
    return (
        None
        if test is None
        else {"z": test.z, "p_value": test.p_value, "auc_ics": test.auc_a, "auc_cv": test.auc_b}
    )


def table_s1(pw: pd.DataFrame) -> str:
    """Supplementary Table 1: patient-wise accuracy and F1 of the model and both experts at
    thresholds 1-6, with McNemar p-values of the model vs each expert (markdown)."""
    lines = [
        "| ≥ rim+ | model acc | model F1 | expert #1 acc | expert #1 F1 | expert #2 acc | "
        "expert #2 F1 | P model vs #1 | P model vs #2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t, g in pw.groupby("threshold"):
        row = g.set_index("who")

        def cell(who: str, col: str, row: pd.DataFrame = row) -> str:
            v = row[col].get(who, float("nan"))
            return "" if pd.isna(v) else (f"{100 * v:.1f}" if col != "p_value" else f"{v:.4f}")

        lines.append(
            f"| {t} | {cell('model', 'accuracy')} | {cell('model', 'f1')} | "
            f"{cell('rater1', 'accuracy')} | {cell('rater1', 'f1')} | "
            f"{cell('rater2', 'accuracy')} | {cell('rater2', 'f1')} | "
            f"{cell('model_vs_rater1', 'p_value')} | {cell('model_vs_rater2', 'p_value')} |"
        )
    return "\n".join(lines) + "\n"


def write_report(
    sweep_dir: str | Path,
    out_dir: str | Path,
    catalogue: dict[str, dict],
    log_wandb: bool = False,
    n_folds: int = 4,
) -> dict:
    """Write every table and figure of the evaluation to ``out_dir``; returns the summary.

    Args:
        sweep_dir: the sweep folder (``<experiment>/fold<k>/predictions.csv``).
        out_dir: the report folder.
        catalogue: the configurations by name (``{"modalities": [...], "train_sites": [...]}``,
            e.g. ``rimnet.config.experiment_catalogue()``).
        log_wandb: also log tables and figures to a W&B run.
        n_folds: outer folds expected per configuration.
    """
    configs = Configurations(catalogue).with_runs(sweep_dir)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or n_folds < 1:
        raise RimnetError(f"n_folds={n_folds!r} must be an integer >= 1 (outer folds expected)")
    preds, missing = load_predictions(sweep_dir, configs, n_folds)
    if not preds:
        raise RimnetError(
            f"no predictions found under {sweep_dir} (expected "
            f"<experiment>/fold<k>/predictions.csv)"
        )
    out = claim_folder(out_dir, "evaluation-report", "report folder (out_dir)")
    files: dict[str, Path] = {}

    def save_csv(df: pd.DataFrame, name: str) -> None:
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False)
        files[name] = out / name

    t3 = table3(preds, configs)
    save_csv(t3, "table3.csv")
    with atomic_path(out / "table3.md") as tmp:
        tmp.write_text(
            table3_markdown(t3) + "\n\nMissing: " + ("; ".join(missing) or "nothing") + "\n"
        )
    aucs, pairs = auc_table(preds, configs)
    save_csv(aucs, "auc.csv")
    save_csv(pairs, "delong_pairs.csv")
    pw, counts, ops = {}, {}, {}
    for section, exp in (("cross-validation", TABLE3_RIMNET), ("inter-center", ICS_EXPERIMENT)):
        if exp in preds:
            op = ops[section] = analysis.apply_operating_point(preds[exp])
            counts[section] = analysis.patient_counts(op)
            pw[section] = analysis.patient_wise(counts[section])
            save_csv(counts[section].reset_index(), f"patient_counts_{exp}.csv")
            save_csv(pw[section], f"patient_wise_{exp}.csv")
            if "consensus_needed" in op:
                save_csv(analysis.consensus_error_analysis(op), f"error_consensus_{exp}.csv")
            if "location" in op and (op["location"] != "").any():
                save_csv(analysis.location_analysis(op), f"location_{exp}.csv")
    if any(e in preds for e in configs.cv()):
        figure5(preds, out / "fig5_roc_pr.png", configs)
        files["fig5_roc_pr.png"] = out / "fig5_roc_pr.png"
    if any(e in preds for e in configs.beyond()):
        figure5(preds, out / "fig_beyond_roc_pr.png", configs, beyond=True)
        files["fig_beyond_roc_pr.png"] = out / "fig_beyond_roc_pr.png"
    ics_vs_cv = figure6(preds, out / "fig6_intercenter.png")
    if ics_vs_cv is not None:
        files["fig6_intercenter.png"] = out / "fig6_intercenter.png"
    if pw:
        patients.figure7(pw, out / "fig7_patientwise.png")
        matrices = {
            k: analysis.chronic_active_confusion(c, CHRONIC_ACTIVE) for k, c in counts.items()
        }
        patients.figure8(matrices, CHRONIC_ACTIVE, out / "fig8_confusion.png")
        files.update(
            {
                "fig7_patientwise.png": out / "fig7_patientwise.png",
                "fig8_confusion.png": out / "fig8_confusion.png",
            }
        )
    if "cross-validation" in ops:
        cv = "cross-validation"
        files.update(_paper_extras(ops[cv], pw[cv], counts[cv], sweep_dir, out, configs))
    summary = {
        "sweep_dir": os.path.relpath(
            Path(sweep_dir).resolve(), out.resolve()
        ),  # portable: relative
        "configurations": sorted(preds),
        "beyond": [e for e in configs.beyond() if e in preds],
        "missing": missing,
        "auc": aucs.set_index("experiment")[["auc_mean_folds", "auc_pooled"]].to_dict("index")
        if len(aucs)
        else {},
        "ics_vs_cv": ics_vs_cv,
        "files": sorted(files),
    }
    write_json(out / "summary.json", summary)
    if log_wandb:
        _log_wandb(files, summary, out)
    return summary


def _paper_extras(
    op: pd.DataFrame,
    pw: pd.DataFrame,
    counts: pd.DataFrame,
    sweep_dir: str | Path,
    out: Path,
    configs: Configurations,
) -> dict[str, Path]:
    """Figs 3, 9, 10, Table S1, the re-rating list and its montage, for RimNet (phase + FLAIR)."""
    made: dict[str, Path] = {}

    def figure(name: str, draw, *args) -> None:  # noqa: ANN001
        draw(*args, out / name)
        made[name] = out / name

    burden = analysis.burden_by_site(counts.reset_index())
    figure("fig3_rim_burden.png", patients.figure3, burden, ["0", "1-3", "≥ 4"])
    if "consensus_needed" in op:
        figure("fig9_errors_consensus.png", lesions.figure9, analysis.consensus_counts(op))
    if "location" in op and (op["location"] != "").any():
        figure("fig10_location.png", lesions.figure10, analysis.location_analysis(op))
    with atomic_path(out / "table_s1_patientwise.md") as tmp:
        tmp.write_text(
            "# Supplementary Table 1: patient-wise classification (chronic active = at least t "
            "rim+ lesions)\n\nAccuracy and F1 in %, McNemar p-values.\n\n" + table_s1(pw)
        )
    made["table_s1_patientwise.md"] = out / "table_s1_patientwise.md"
    errors = analysis.rerating_list(op)
    with atomic_path(out / "rerating_list.csv") as tmp:
        errors.to_csv(tmp, index=False)
    made["rerating_list.csv"] = out / "rerating_list.csv"
    patches = _error_patches(errors, Path(sweep_dir) / TABLE3_RIMNET)
    modalities = configs.modalities(TABLE3_RIMNET)
    if patches:
        figure("examples_errors.png", lesions.error_examples, errors, patches, modalities)
    return made


def _error_patches(errors: pd.DataFrame, experiment_dir: Path) -> dict[str, np.ndarray]:
    """The cached 28³ patches (the experiment's modalities) of the listed lesions, found through
    a job's resolved config; empty if the cache is gone."""
    from rimnet.data.cache import load_cache
    from rimnet.data.contract import center_crop

    configs = sorted(experiment_dir.glob("fold*/resolved_config.yaml"))
    if not configs or errors.empty:
        return {}
    cfg = load_job_config(configs[0])
    try:
        cache = load_cache(cfg.data.cache_dir)
    except (RimnetError, OSError, KeyError):
        return {}
    les = cache.lesions
    rows = les[(les["augmentation"] == "none") & les["lesion_id"].isin(errors.lesion_id)]
    channels = cache.channels(list(cfg.modalities))
    size = int(cfg.data.preprocess.patch_size)
    return {
        r.lesion_id: center_crop(np.asarray(cache.patches[i][channels], np.float32), size)
        for i, r in zip(rows.index, rows.itertuples())
    }


def _log_wandb(files: dict[str, Path], summary: dict, out: Path) -> None:
    """Tables and figures to a W&B run of its own (group ``evaluation``, files under ``out``);
    a table a partial sweep left empty is skipped. ``WANDB_MODE`` decides online/offline, as for
    training (offline when unset)."""
    import wandb

    run = wandb_run(
        "evaluation",
        f"evaluation-{Path(summary['sweep_dir']).name}",
        out,
        {k: v for k, v in summary.items() if k != "files"},
    )
    try:
        for name, path in files.items():
            key = name.rsplit(".", 1)[0]
            if name.endswith(".csv"):
                try:
                    table = pd.read_csv(path, keep_default_na=False)
                except pd.errors.EmptyDataError:
                    continue  # e.g. no DeLong pair yet in a partial sweep
                run.log({key: wandb.Table(dataframe=table)})
            elif name.endswith(".png"):
                run.log({key: wandb.Image(str(path))})
            else:  # markdown tables
                run.log({key: wandb.Html(f"<pre>{path.read_text()}</pre>")})
        run.summary.update({"summary": json.dumps(summary)})
    finally:
        run.finish()
