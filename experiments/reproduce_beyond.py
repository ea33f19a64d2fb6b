"""Beyond the paper, in the paper's protocol: phase + T2* + FLAIR (three-branch RimNet) and
MONAI's DenseNet and ResNet on phase + FLAIR, each against RimNet (phase + FLAIR) on the same
lesions.

    python experiments/reproduce_beyond.py --scale smoke|default|paper [--out DIR] [overrides]

The sweep is Table 3's (``reproduce_table3.py``: same folder, scale and overrides), so RimNet
(phase + FLAIR) jobs already there are reused, not retrained. The output folder gets the AUC table
with DeLong P against RimNet, Table 3's rows at the 95 %-specificity operating point, the ROC/PR
figure and README.md with the command, the machine and the CPU time of each configuration. Each
configuration beyond the paper is then exported as a bundle and predicts the cohort through the
real commands (bundles and predictions under ``$RIMNET_ROOT/outputs/beyond-<scale>-bundles``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from reproduce_table3 import REPO, SCALES, machine, sweep

from rimnet.config import beyond_experiments, experiment_catalogue
from rimnet.evaluation.report import TABLE3_RIMNET, load_job_config

SIGNIFICANCE = 0.05


def job_minutes(experiment_dir: Path) -> tuple[float, int]:
    """Minutes the finished jobs of one configuration took (from the start of each job's
    resolved config to its job.json), and how many there are."""
    jobs = [j.parent for j in experiment_dir.glob("fold*/job.json")]
    spans = [
        (j / "job.json").stat().st_mtime - (j / "resolved_config.yaml").stat().st_mtime
        for j in jobs
    ]
    return sum(spans) / 60, len(jobs)


def parameters(experiment_dir: Path) -> int | None:
    """Trainable parameters of the network one job of the configuration built."""
    from rimnet.models import build_network

    configs = sorted(experiment_dir.glob("fold*/resolved_config.yaml"))
    if not configs:
        return None
    net = dict(load_job_config(configs[0]).model.net)
    model = build_network(net.pop("_target_"), net)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def results_table(aucs: pd.DataFrame, sweep_dir: Path) -> list[str]:
    """RimNet (phase + FLAIR), then each configuration beyond the paper: AUCs, the difference
    and DeLong P against RimNet, parameters and CPU time (markdown lines)."""
    rows = aucs[(aucs.study == "beyond") | (aucs.experiment == TABLE3_RIMNET)]
    ref = aucs.set_index("experiment").auc_pooled.get(TABLE3_RIMNET, float("nan"))
    lines = [
        "| configuration | parameters | pooled AUC [95 % CI] | mean of folds | Δ pooled vs RimNet "
        "| DeLong P vs RimNet | CPU time (nested jobs, one per outer fold) |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, r in rows.iterrows():
        minutes, jobs = job_minutes(sweep_dir / r.experiment)
        n = parameters(sweep_dir / r.experiment)
        base = r.experiment == TABLE3_RIMNET
        lines.append(
            f"| {r.configuration} | {n:,} | {r.auc_pooled:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] "
            f"| {r.auc_mean_folds:.3f} | {'reference' if base else f'{r.auc_pooled - ref:+.3f}'} "
            f"| {'' if base else f'{r.p_vs_rimnet:.3g}'} | {minutes:.1f} min ({jobs} jobs) |"
        )
    return lines


def verdict(aucs: pd.DataFrame) -> list[str]:
    """One sentence per configuration beyond the paper: significant or not at 0.05."""
    rows = aucs[aucs.study == "beyond"]
    ref = aucs.set_index("experiment").auc_pooled.get(TABLE3_RIMNET, float("nan"))
    out = []
    for _, r in rows.iterrows():
        side = "above" if r.auc_pooled > ref else "below"
        sig = "significant" if r.p_vs_rimnet < SIGNIFICANCE else "not significant"
        out.append(
            f"- {r.configuration}: pooled AUC {r.auc_pooled:.3f}, {side} RimNet (phase + FLAIR) "
            f"{ref:.3f}; DeLong P = {r.p_vs_rimnet:.3g}, {sig} at {SIGNIFICANCE}."
        )
    return out


def export_and_predict(sweep_dir: Path, experiments: list[str], cohort: Path, out: Path) -> list:
    """``rimnet export`` and ``rimnet predict --cohort`` for each configuration: markdown lines
    with its bundle's members and threshold and the rim+ lesions and chronic-active patients
    found."""
    from rimnet.inference import Bundle

    lines = ["| configuration | bundle | patients | rim+ lesions found | chronic active (≥ 4) |"]
    lines.append("|---|---|---|---|---|")
    for exp in experiments:
        bundle = out / f"{exp}.pt"
        run_cli(["export", str(sweep_dir / exp), str(bundle)])
        predictions = out / f"predict-{exp}"
        run_cli(["predict", "--bundle", str(bundle), "--cohort", str(cohort), "--out",
                 str(predictions), "--no-report", "--device", "cpu"])  # fmt: skip
        b = Bundle.load(bundle)
        patients = pd.read_csv(predictions / "patients.csv")
        lines.append(
            f"| {exp} | {len(b.members)} members, threshold {b.threshold:.3f} | {len(patients)} "
            f"| {int(patients.rim_pos_count.sum())} | {int(patients.chronic_active.sum())} |"
        )
    return lines


def run_cli(argv: list[str]) -> None:
    cmd = [sys.executable, "-m", "rimnet.cli", *argv]
    print("$ rimnet " + shlex.join(argv), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", default="default", choices=sorted(SCALES))
    ap.add_argument("--out", help="report folder (default: outputs/beyond-<scale> in the checkout)")
    ap.add_argument(
        "overrides", nargs="*", help="extra Hydra overrides for every job (Table 3's budget)"
    )
    args = ap.parse_args()
    from rimnet.evaluation.report import write_report

    root = Path(os.environ.get("RIMNET_ROOT", REPO))
    sweep_dir = root / "outputs" / "sweeps" / args.scale
    t0 = time.time()
    experiments = ",".join([TABLE3_RIMNET, *beyond_experiments()])
    cmd = sweep(experiments, args.scale, "basic", args.overrides)
    out = Path(args.out or REPO / "outputs" / f"beyond-{args.scale}")
    summary = write_report(
        sweep_dir, out, experiment_catalogue(), n_folds=SCALES[args.scale]["folds"][0]
    )
    cohort = root / "data" / "synth" / args.scale / "cohort.csv"
    bundles = root / "outputs" / f"beyond-{args.scale}-bundles"
    served = export_and_predict(sweep_dir, beyond_experiments(), cohort, bundles)
    wall = time.time() - t0
    aucs = pd.read_csv(out / "auc.csv")
    t3 = (out / "table3.md").read_text().split("\n\nMissing:")[0]  # the paper's rows: table3/
    lines = [
        f"# Beyond the paper ({args.scale} scale)",
        "",
        f"Command: `{shlex.join(['python', *sys.argv])}`, run {time.strftime('%Y-%m-%d %H:%M')}.",
        f"Machine: {machine()}.",
        f"Wall time: {wall / 60:.1f} min (RimNet jobs already in the sweep are reused).",
        "",
        "Sweep:",
        "",
        f"    {shlex.join(['python', *cmd[1:]])}",
        "",
        "## Against RimNet (phase + FLAIR), same lesions",
        "",
        *results_table(aucs, sweep_dir),
        "",
        *verdict(aucs),
        "",
        "## Table 3 rows (95 % specificity per test fold)",
        "",
        t3,
        "",
        "![fig_beyond_roc_pr.png](fig_beyond_roc_pr.png)",
        "",
        "## Exported and used for prediction",
        "",
        "Each configuration's fold models as a bundle (`rimnet export`), then `rimnet predict "
        "--cohort` over the whole cohort (its training patients too: this checks the path, it "
        "is not an evaluation):",
        "",
        *served,
        "",
    ]
    (out / "README.md").write_text("\n".join(lines))
    run = {"scale": args.scale, "wall_s": wall, "machine": machine(), "command": cmd[1:]}
    (out / "run.json").write_text(json.dumps(run, indent=2))
    print(f"written: {out}/README.md ({wall / 60:.1f} min); beyond: {summary['beyond']}")


if __name__ == "__main__":
    main()
