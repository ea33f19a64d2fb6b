"""Per-patient latency of ``rimnet predict``: NIfTI on disk → written outputs, split by stage.

    python benchmarks/predict.py [--patients 5] [--device cpu|cuda] [--scale default]

Uses freshly initialised RimNet weights at the CPU default widths (8, 16, 32) and at the authors'
widths (32, 64, 128): latency does not depend on what the weights learned. Prints the median of
each stage (load / candidates / patches / model / write) over the patients. The paper reports
~300 ms per patient on a GTX 1080Ti.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rimnet.data.cache import PreprocessConfig
from rimnet.data.cohort import read_cohort
from rimnet.inference import Bundle, Predictor, write_patient
from rimnet.models import RimNet
from rimnet.synth.cohort import generate_cohort


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--patients", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--scale", default="default")
    ap.add_argument("--cohort-dir", default="/tmp/rimnet-bench/predict-cohort")
    args = ap.parse_args()
    csv = generate_cohort(Path(args.cohort_dir) / args.scale, args.scale, progress=False)
    rows = [r for _, r in read_cohort(csv).iterrows()][: args.patients]
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU "
        f"threads, torch {torch.__version__}, "
        f"device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else "")
    )
    stages = ["load", "candidates", "patches", "model", "write"]
    print(
        f"{'widths':14s} {'members':>7s} {'lesions':>8s} "
        + " ".join(f"{s:>10s}" for s in stages)
        + f" {'total ms':>9s}"
    )
    patches = PreprocessConfig.paper()
    for widths in ((8, 16, 32), (32, 64, 128)):
        for members in (1, 4):
            model = {
                "n_modalities": 2,
                "widths": list(widths),
                "fc": [256, 128, 64],
                "bottleneck": 1,
                "patch_size": patches.patch_size,
                "dropout": 0.0,
            }
            states = [RimNet(**model).state_dict() for _ in range(members)]
            bundle = Bundle(
                modalities=["phase", "flair"],
                model=model,
                members=states,
                threshold=0.5,
                patch_size=patches.patch_size,
                context=patches.context,
                rules=dict(vars(patches.rules)),
            )
            pred = Predictor(bundle, device=args.device)
            pred.predict_row(rows[0])  # warm-up
            times, n_les = [], []
            with tempfile.TemporaryDirectory() as out:
                for row in rows:
                    t0 = time.perf_counter()
                    r = pred.predict_row(row)
                    write_patient(r, out)
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    r.timings["total"] = time.perf_counter() - t0
                    times.append(r.timings)
                    n_les.append(len(r.lesions))
            med = {k: 1000 * float(np.median([t[k] for t in times])) for k in stages + ["total"]}
            print(
                f"{str(widths):14s} {members:7d} {int(np.median(n_les)):8d} "
                + " ".join(f"{med[s]:10.0f}" for s in stages)
                + f" {med['total']:9.0f}"
            )


if __name__ == "__main__":
    main()
