"""Reproduce Table 3 and Figs 3 and 5–10 end to end: synthesise, preprocess, sweep, evaluate.

    python experiments/reproduce_table3.py --scale smoke|default|paper [--launcher basic|joblib]
    [--out DIR]

``make reproduce-table3`` runs it at ``paper`` scale (RimNet at the authors' widths on a GPU);
``make reproduce-table3 SCALE=smoke`` does the same on a CPU in minutes with a tiny budget. The
output folder gets the figures, the tables, and README.md with the command, the machine, the wall
time and the results next to the paper's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from rimnet.config import cv_experiments, experiment_catalogue, inter_center_experiments
from rimnet.data.contract import MODALITIES
from rimnet.evaluation.report import TABLE3_RIMNET, TABLE3_SINGLE, Configurations

REPO = Path(__file__).resolve().parents[1]
# conf/experiment/: Table 3's rows first, so a partial sweep already fills the table.
CV = ",".join(sorted(cv_experiments(), key=lambda e: e not in (TABLE3_RIMNET, TABLE3_SINGLE)))
ICS = ",".join(inter_center_experiments())
# Per scale: folds (the smoke cohort has 3 patients per site, too few for 4 x 3) and the budget.
SCALES = {
    "smoke": {
        "folds": (3, 2),
        "overrides": ["trainer.max_epochs=2", "+trainer.limit_train_batches=4", "logger=csv"],
    },
    "default": {"folds": (4, 3), "overrides": ["logger=csv"]},
    "paper": {"folds": (4, 3), "overrides": ["model=rimnet_paper", "trainer=gpu", "logger=wandb"]},
}


def machine() -> str:
    import torch

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.platform()}, {os.cpu_count()} CPU cores{gpu}, torch {torch.__version__}"


def sweep_command(experiments: str, scale: str, launcher: str, extra: list[str]) -> list[str]:
    outer, inner = SCALES[scale]["folds"]
    cmd = [
        sys.executable,
        "-m",
        "rimnet.train",
        "-m",
        f"+experiment={experiments}",
        f"fold={','.join(map(str, range(outer)))}",
        f"data={scale}",
        f"data.outer_folds={outer}",
        f"data.inner_folds={inner}",
        *SCALES[scale]["overrides"],
        *extra,
    ]
    return cmd + ([f"hydra/launcher={launcher}"] if launcher != "basic" else [])


def sweep(experiments: str, scale: str, launcher: str, extra: list[str]) -> list[str]:
    """Run one multirun (finished jobs are skipped by their fingerprint) and return its command."""
    cmd = sweep_command(experiments, scale, launcher, extra)
    print("$ " + shlex.join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    return cmd


# The paper's claims about the ordering of the configurations (Fig. 5, §3.1): (name, a, b) means
# "a's AUC is above b's"; ``best single`` stands for the best single-modality configuration.
PAPER_ORDER = [
    ("phase above FLAIR (0.913 vs 0.855)", "phase", "flair"),
    ("T2* above FLAIR (0.901 vs 0.855)", "t2star", "flair"),
    ("phase + FLAIR above the best single (0.946)", "phase_flair", "best single"),
    ("phase + T2* above the best single (0.943)", "phase_t2star", "best single"),
    ("T2* + FLAIR above the best single (0.926)", "t2star_flair", "best single"),
    ("phase + FLAIR above T2* + FLAIR (0.946 vs 0.926)", "phase_flair", "t2star_flair"),
    ("phase + T2* above T2* + FLAIR (0.943 vs 0.926)", "phase_t2star", "t2star_flair"),
]


def figure_order(name: str) -> tuple[int, str]:
    """The paper's order: ``fig3_…`` before ``fig10_…``, other pictures after the figures."""
    number = name.removeprefix("fig").split("_")[0]
    return (int(number) if name.startswith("fig") and number.isdigit() else 99, name)


def ordering_lines(aucs: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    """A table: each of the paper's ordering claims, whether the pooled AUCs here agree, and the
    DeLong P of the difference (paired, same lesions). Also how close phase and T2* are (paper:
    0.012 apart, not significant)."""
    auc = dict(zip(aucs.experiment, aucs.auc_pooled))
    singles = [e for e in MODALITIES if e in auc]
    if not singles:
        return []
    best = max(singles, key=auc.get)
    name = Configurations(experiment_catalogue()).label(best)
    p = {frozenset((r.a, r.b)): r.p_value for r in pairs.itertuples()}
    lines = [
        "## Ordering compared with the paper",
        "",
        f"Pooled AUCs; the best single modality here is {name} ({auc[best]:.3f}). "
        "P: DeLong, "
        "paired on the same lesions.",
        "",
        "| the paper finds | here | holds | P |",
        "|---|---|---|---|",
    ]
    for claim, a, b in PAPER_ORDER:
        b = best if b == "best single" else b
        if a not in auc or b not in auc or a == b:
            continue
        holds = "yes" if auc[a] > auc[b] else "**no**"
        pv = p.get(frozenset((a, b)), float("nan"))
        lines.append(f"| {claim} | {auc[a]:.3f} vs {auc[b]:.3f} | {holds} | {pv:.3g} |")
    if "phase" in auc and "t2star" in auc:
        gap = auc["phase"] - auc["t2star"]
        lines += [
            "",
            f"Phase minus T2*: {gap:+.3f} (paper +0.012, P not significant; DeLong P here "
            f"{p.get(frozenset(('phase', 't2star')), float('nan')):.3g}).",
        ]
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", default="paper", choices=sorted(SCALES))
    ap.add_argument(
        "--launcher",
        default="basic",
        choices=["basic", "joblib", "submitit_local", "submitit_slurm"],
    )
    ap.add_argument(
        "--out",
        help="report folder (default: outputs/table3-<scale> in the checkout; the recorded run in "
        "experiments/table3/ is a copy of one)",
    )
    ap.add_argument(
        "--skip-sweeps",
        action="store_true",
        help="only evaluate the jobs already in the sweep folder "
        "(wall time then from the job files' times)",
    )
    ap.add_argument(
        "overrides",
        nargs="*",
        help="extra Hydra overrides for every job, e.g. trainer.max_epochs=5",
    )
    args = ap.parse_args()
    from rimnet.evaluation.report import PAPER_AUC, write_report

    root = Path(os.environ.get("RIMNET_ROOT", REPO))
    t0 = time.time()
    sweep_dir = root / "outputs" / "sweeps" / args.scale
    if args.skip_sweeps:
        cmds = [
            sweep_command(ICS, args.scale, args.launcher, args.overrides),
            sweep_command(CV, args.scale, args.launcher, args.overrides),
        ]
        jobs = [j.parent for j in sweep_dir.glob("*/fold*/job.json")]
        starts = [(j / "resolved_config.yaml").stat().st_mtime for j in jobs]
        ends = [(j / "job.json").stat().st_mtime for j in jobs]
        busy = sum(e - b for b, e in zip(starts, ends))  # a sweep resumed later: its jobs' time
        t0 = min(starts) if starts else t0
    else:
        cmds = [
            sweep(ICS, args.scale, args.launcher, args.overrides),
            sweep(CV, args.scale, args.launcher, args.overrides),
        ]
    out = Path(args.out or REPO / "outputs" / f"table3-{args.scale}")
    summary = write_report(
        sweep_dir, out, experiment_catalogue(), n_folds=SCALES[args.scale]["folds"][0]
    )
    wall = (max(ends) if args.skip_sweeps and ends else time.time()) - t0
    t3 = (out / "table3.md").read_text()
    aucs = pd.read_csv(out / "auc.csv")
    lines = (
        [
            f"# Table 3 reproduction ({args.scale} scale)",
            "",
            f"Command: `{shlex.join(['python', *sys.argv])}` (sweeps below), run "
            f"{time.strftime('%Y-%m-%d %H:%M')}.",
            f"Machine: {machine()}.",
            f"Wall time: {wall / 60:.1f} min (sweeps + evaluation; cohort and cache built if "
            f"missing"
            + (
                f"; from the job files' times, first start to last end; the jobs themselves "
                f"took {busy / 60:.1f} min together"
                if args.skip_sweeps
                else ""
            )
            + ").",
            "",
            "Sweeps:",
            "",
        ]
        + [f"    {shlex.join(['python', *c[1:]])}" for c in cmds]
        + [
            "",
            "## Table 3",
            "",
            t3,
            "",
            "## AUC",
            "",
            "| configuration | AUC (mean of folds) | pooled AUC [95 % CI] | paper |",
            "|---|---|---|---|",
        ]
    )
    for _, r in aucs.iterrows():
        lines.append(
            f"| {r.configuration} | {r.auc_mean_folds:.3f} | {r.auc_pooled:.3f} [{r.ci_low:.3f}, "
            f"{r.ci_high:.3f}] | "
            f"{PAPER_AUC.get(r.experiment, float('nan')):.3f} |"
        )
    if summary.get("ics_vs_cv"):
        s = summary["ics_vs_cv"]
        lines += [
            "",
            f"Inter-center study on Lausanne lesions: ensemble AUC {s['auc_ics']:.3f} vs "
            f"cross-validation "
            f"{s['auc_cv']:.3f} (DeLong P = {s['p_value']:.3f}; paper 0.953 vs 0.958, P = 0.47).",
        ]
    lines += ["", *ordering_lines(aucs, pd.read_csv(out / "delong_pairs.csv"))]
    lines += ["## Figures", ""]
    pngs = [f for f in summary["files"] if f.endswith(".png")]
    lines += [f"![{f}]({f})" for f in sorted(pngs, key=figure_order)]
    if (out / "table_s1_patientwise.md").exists():
        lines += ["", (out / "table_s1_patientwise.md").read_text().replace("# ", "## ", 1)]
    if (out / "rerating_list.csv").exists():
        lines += [
            "The highest-confidence false positives and false negatives (`examples_errors.png`)",
            "are listed in [rerating_list.csv](rerating_list.csv), for a group to re-rate (§2.8).",
            "",
        ]
    (out / "README.md").write_text("\n".join(lines))
    (out / "run.json").write_text(
        json.dumps(
            {
                "scale": args.scale,
                "wall_s": wall,
                "machine": machine(),
                "commands": [["python", *c[1:]] for c in cmds],
            },
            indent=2,
        )
    )
    print(f"written: {out}/README.md ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
