"""Throughput of synthesis and preprocessing (patients/s, lesions/s) at a given scale.

    python benchmarks/preprocess.py [--scale default] [--out DIR]

Prints one table; nothing is asserted. Elastic deformation (MONAI) dominates preprocessing, so the
table also shows the rate without it, and the rate with one process and with ``n_jobs`` processes
over patients (the same cache either way), measured side by side. ``--out`` must be new or empty
(default: a fresh temporary folder); nothing outside it is written.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import torch

from rimnet.data.cache import PreprocessConfig, build_cache
from rimnet.io import claim_folder
from rimnet.synth.cohort import generate_cohort


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", default="default", choices=["smoke", "default", "paper"])
    ap.add_argument("--out", default=None, help="new or empty folder (default: a temporary one)")
    ap.add_argument("--n-jobs", type=int, default=None, help="processes (default: the cores)")
    args = ap.parse_args()
    out = claim_folder(args.out or tempfile.mkdtemp(prefix="rimnet-bench-"), "benchmark")
    t0 = time.perf_counter()
    csv = generate_cohort(out / "cohort", args.scale, seed=0, force=True, progress=False)
    t_synth = time.perf_counter() - t0
    rows = []
    n_jobs = PreprocessConfig.paper(n_jobs=args.n_jobs).workers()
    configs = [("preprocess (paper augmentation)", PreprocessConfig.paper(n_jobs=1))]
    if n_jobs > 1:  # one process per 2 cores: nothing to compare on a 2-core machine
        configs.append((f"preprocess, {n_jobs} processes", PreprocessConfig.paper(n_jobs=n_jobs)))
    configs.append(("preprocess (no elastic)", PreprocessConfig.paper(elastic_copies=0, n_jobs=1)))
    for name, cfg in configs:
        t0 = time.perf_counter()
        folder = out / name.replace(" ", "_").replace(",", "")
        cache = build_cache(csv, folder, cfg, force=True, progress=False)
        dt = time.perf_counter() - t0
        n_pat = len(cache.patients)
        n_les = int((cache.lesions.augmentation == "none").sum())
        rows.append((name, n_pat, n_les, len(cache.lesions), dt))
    n_pat, n_les = rows[0][1], rows[0][2]
    print(f"output: {out}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}"
    )
    print(
        f"{'stage':34s} {'patients':>8s} {'lesions':>8s} {'patches':>8s} {'seconds':>8s} "
        f"{'patients/s':>10s} {'lesions/s':>10s}"
    )
    print(
        f"{'synthesis':34s} {n_pat:8d} {n_les:8d} {'-':>8s} {t_synth:8.1f} "
        f"{n_pat / t_synth:10.2f} {n_les / t_synth:10.1f}"
    )
    for name, p, lesions, patches, dt in rows:
        print(
            f"{name:34s} {p:8d} {lesions:8d} {patches:8d} {dt:8.1f} {p / dt:10.2f} "
            f"{lesions / dt:10.1f}"
        )


if __name__ == "__main__":
    main()
