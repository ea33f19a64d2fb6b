"""Wall time of one full nested-CV job (3 inner runs + the final run) and the projected Table 3
grid.

    python benchmarks/protocol.py [--data default] [--experiment phase_flair] [--max-epochs N]
    [--extra ...]

Runs ``python -m rimnet.train -m +experiment=<exp> fold=0`` (the real CLI, basic launcher) into a
temporary sweep folder, times it, reads the job's schedule, and projects the grid of Table 3
(6 experiments × 4 folds + 4 inter-center jobs). Unimodal jobs are scaled by the measured ratio of
unimodal to bimodal training-step throughput; inter-center jobs by their share of patients (Basel).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rimnet.models import RimNet

REPO = Path(__file__).resolve().parents[1]


def step_rate(n_mod: int, widths, device: str, steps: int = 5) -> float:
    net = RimNet(n_mod, widths=widths).to(device)
    opt = torch.optim.Adam(net.parameters())
    x, y = (
        torch.randn(32, n_mod, 28, 28, 28, device=device),
        torch.randint(0, 2, (32,), device=device),
    )
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return 32 * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default="default")
    ap.add_argument("--experiment", default="phase_flair")
    ap.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="cap of the inner runs (default: the data config's)",
    )
    ap.add_argument(
        "--extra",
        nargs="*",
        default=[],
        help="more Hydra overrides, e.g. model=rimnet_paper trainer=gpu",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "rimnet.train",
            "-m",
            f"+experiment={args.experiment}",
            "fold=0",
            f"data={args.data}",
            "logger=csv",
            f"hydra.sweep.dir={tmp}/sweep",
            *args.extra,
        ] + ([f"trainer.max_epochs={args.max_epochs}"] if args.max_epochs else [])
        # build cohort + cache first so the timing covers the job only
        subprocess.run(
            cmd[:3]
            + [
                f"+experiment={args.experiment}",
                f"data={args.data}",
                "logger=csv",
                "trainer.max_epochs=0",
                "test=false",
                f"hydra.run.dir={tmp}/warm",
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
            env={**os.environ, "WANDB_MODE": "offline"},
        )
        t0 = time.perf_counter()
        subprocess.run(
            cmd,
            cwd=REPO,
            check=True,
            capture_output=True,
            env={**os.environ, "WANDB_MODE": "offline"},
        )
        wall = time.perf_counter() - t0
        job = json.loads((Path(tmp) / "sweep" / args.experiment / "fold0" / "job.json").read_text())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    widths = [32, 64, 128] if "model=rimnet_paper" in args.extra else [8, 16, 32]
    uni_ratio = step_rate(2, widths, device) / step_rate(1, widths, device)
    bimodal = (
        wall
        if args.experiment.count("_")
        else wall * step_rate(1, widths, device) / step_rate(2, widths, device)
    )
    grid = 3 * 4 * bimodal + 3 * 4 * bimodal * uni_ratio + 4 * bimodal * 69 / 124
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores, torch {torch.__version__}"
        + (f", {torch.cuda.get_device_name()}" if device == "cuda" else "")
    )
    print(f"job: {' '.join(cmd[1:])}")
    print(
        f"one nested-CV job ({args.experiment}, data={args.data}): {wall / 60:.1f} min; inner "
        f"schedules {job['inner_schedules']} "
        f"-> fixed {job['fixed_schedule']}; test AUROC "
        f"{job['test_metrics'].get('test/auroc', float('nan')):.3f}"
    )
    print(f"unimodal/bimodal time per step: {uni_ratio:.2f}")
    print(
        f"projected Table 3 grid (6 x 4 jobs + 4 inter-center jobs), one job at a time: "
        f"{grid / 3600:.1f} h"
    )


if __name__ == "__main__":
    main()
