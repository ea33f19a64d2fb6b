"""One configuration's nested cross-validation under each engine, and the Table 3 projection.

    python benchmarks/protocol.py [--scale smoke|default|paper] [--experiment phase_flair]
        [--trainer cpu|gpu] [--model rimnet|rimnet_paper] [--epochs 2] [--engines sequential packed]
        [--root DIR] [--baseline OTHER_CHECKOUT]

Synthesises and preprocesses the cohort once (timed), then runs
``python -m rimnet.train +experiment=<e> protocol=cv`` (4 outer folds × (3 inner + 1 final) runs)
with ``engine=sequential`` and with ``engine=packed``, side by side on the same data, each into a
fresh output folder. Prints wall time, training patch-steps and patches/s per engine, their ratio,
and the projected Table 3 protocol: synthesis + preprocessing + 7 configurations (six nested CV
configurations and the inter-center study) at the measured rate: an upper bound, as unimodal
configurations train one branch and the inter-center study one site. ``--epochs`` caps the epochs
of every run (the staircase may stop earlier); the projection holds for the same cap.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from rimnet.hardware import cpu_name

REPO = Path(__file__).resolve().parents[1]
CONFIGURATIONS = 7  # six nested-CV configurations of Table 3 + the inter-center study


def prepare(root: Path, scale: str) -> float:
    """Generate and preprocess the cohort and write the splits under ``root``; seconds taken."""
    sys.path.insert(0, str(REPO / "tests"))
    from helpers import compose_train

    from rimnet.training.run import prepare_data

    cfg = compose_train([f"data={scale}"], root, root)
    start = time.perf_counter()
    prepare_data(cfg)
    return time.perf_counter() - start


def patch_steps(stdout: str, sweep: Path) -> int:
    """Training patches × epochs trained, summed over every run of the configuration."""
    total = 0
    for m in re.finditer(r"(\w+) fold (\d) (\w+): (\d+) training patches", stdout):
        _, fold, stage, n = m.groups()
        metrics = sweep / f"fold{fold}" / stage / "csv" / "metrics.csv"
        epochs = pd.read_csv(metrics)["train/loss"].notna().sum()
        total += int(n) * int(epochs)
    return total


def run_engine(
    root: Path, engine: str, args: argparse.Namespace, source: Path = REPO, tag: str = ""
) -> tuple[float, int]:
    """Wall seconds and patch-steps of ``protocol=cv`` with ``engine``, run from ``source`` (this
    checkout, or another one for a side-by-side comparison)."""
    log_dir = root / f"outputs-{engine}{tag}"
    cmd = [
        sys.executable, "-m", "rimnet.train", f"+experiment={args.experiment}", "protocol=cv",
        f"engine={engine}", f"data={args.scale}", f"trainer={args.trainer}", f"model={args.model}",
        f"trainer.max_epochs={args.epochs}", "logger=csv", "~callbacks.progress_bar",
        "+trainer.enable_progress_bar=false",
        f"paths.log_dir={log_dir}",
    ]  # fmt: skip
    env = {**os.environ, "RIMNET_ROOT": str(root), "WANDB_MODE": "offline"}
    env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")])
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=source, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode:
        sys.exit(f"{engine} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    sweep = log_dir / "sweeps" / args.scale / args.experiment
    return seconds, patch_steps(out.stdout, sweep)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", default="smoke", choices=["smoke", "default", "paper"])
    p.add_argument("--experiment", default="phase_flair")
    p.add_argument("--trainer", default="gpu" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default="rimnet", choices=["rimnet", "rimnet_paper"])
    p.add_argument("--epochs", type=int, default=2, help="cap on the epochs of every run")
    p.add_argument(
        "--engines", nargs="+", default=["sequential", "packed"], help="engines, in this order"
    )
    p.add_argument("--root", type=Path, default=None, help="working folder (default: temporary)")
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="another checkout (e.g. a git worktree of an earlier commit): its packed engine runs "
        "too, on the same data, and the ratio is printed",
    )
    args = p.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="rimnet-protocol-"))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu_name()
    print(
        f"device: {device}, {os.cpu_count()} cores; scale {args.scale}, {args.experiment}, "
        f"trainer={args.trainer}, model={args.model}, at most {args.epochs} epochs per run"
    )
    data_s = prepare(root, args.scale)
    print(f"synthesis + preprocessing + splits: {data_s:.0f} s")
    rows = {}
    for engine in args.engines:
        seconds, steps = run_engine(root, engine, args)
        rows[engine] = (seconds, steps)
        print(
            f"{engine:>10}: 16 runs in {seconds:7.1f} s, {steps} patch-steps, "
            f"{steps / seconds:8.1f} patches/s (process start and data loading included)"
        )
    if args.baseline is not None:
        seconds, steps = run_engine(root, "packed", args, args.baseline, "-baseline")
        rows["baseline"] = (seconds, steps)
        print(f"{'baseline':>10}: packed engine of {args.baseline}: {seconds:7.1f} s, {steps} "
              f"patch-steps")  # fmt: skip
        if "packed" in rows:
            print(f"packed / baseline packed wall time: {rows['packed'][0] / seconds:.2f}x")
    if {"sequential", "packed"} <= rows.keys():
        print(f"packed / sequential speed: {rows['sequential'][0] / rows['packed'][0]:.2f}x")
    for engine, (seconds, _) in rows.items():
        total = data_s + CONFIGURATIONS * seconds
        print(
            f"projected Table 3 protocol with engine={engine}: {total / 60:.1f} min "
            f"(data {data_s / 60:.1f} min + {CONFIGURATIONS} x {seconds / 60:.1f} min)"
        )


if __name__ == "__main__":
    main()
