"""Host cost per training step, where compute is near zero (a stand-in for the GPU's launch-bound
regime): RimNet widths 2/2/2 on the CPU, K = 1 and K = 12 members.

    python benchmarks/packed_host_cost.py [--cache DIR] [--steps 30] [--k 1 12]
        [--widths 2 2 2] [--device cpu|gpu] [--repeats 3]

Prints, side by side in one run, the milliseconds per step of
- the packed step inside Lightning (``PackedModule`` + ``PackDataModule`` under a ``Trainer``),
- the same packed arithmetic driven by a bare loop (gather, augment, grouped forward/backward,
  member-wise Adam: what a hand-written training loop costs),
- the sequential Lightning step (one ``RimNetModule`` run; K runs take K of these).
The two packed variants alternate ``--repeats`` times and the medians are shown (a shared machine
drifts). Without ``--cache`` the smoke cohort is generated and preprocessed in a temporary folder.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytorch_lightning as pl
import torch

from rimnet.data.cache import PreprocessConfig, build_cache, load_cache
from rimnet.data.datamodule import PatchDataModule
from rimnet.models import PackedRimNet, RimNet
from rimnet.synth.cohort import generate_cohort
from rimnet.training.member_adam import MemberAdam
from rimnet.training.module import RimNetModule
from rimnet.training.packed_data import PackDataModule
from rimnet.training.packed_module import PackedModule, weighted_ce

NET = {"n_modalities": 2, "widths": [2, 2, 2], "fc": [4]}
DEVICE = ["cpu"]  # set by --device
QUIET = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}


class StepClock(pl.Callback):
    """Milliseconds per training step after ``warmup`` steps."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup, self.n, self.t0, self.t1 = warmup, 0, 0.0, 0.0

    def on_train_batch_start(self, *args: object) -> None:
        if self.n == self.warmup:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, *args: object) -> None:
        self.n += 1
        self.t1 = time.perf_counter()  # the last step's end, not the epoch's end or teardown

    def ms(self) -> float:
        return 1000 * (self.t1 - self.t0) / max(self.n - self.warmup, 1)


def timed_fit(module: pl.LightningModule, data: pl.LightningDataModule, steps: int) -> float:
    """Milliseconds per step of ``steps`` training steps under a Trainer (after 3 warm-up)."""
    clock = StepClock()
    trainer = pl.Trainer(
        accelerator=DEVICE[0],
        max_epochs=1,
        limit_train_batches=steps + 3,
        callbacks=[clock],
        **QUIET,
    )
    trainer.fit(module, datamodule=data)
    return clock.ms()


def members(cache, k: int) -> list:
    ids = cache.patients["patient_id"].tolist()
    dms = [PatchDataModule(cache, ["phase", "flair"], train_ids=ids, seed=s) for s in range(k)]
    return [SimpleNamespace(dm=dm, epoch=0, done=False) for dm in dms]


def packed_lightning(cache, k: int, steps: int) -> float:
    torch.manual_seed(0)
    packed = PackedRimNet.from_models([RimNet(**NET) for _ in range(k)])
    adam = torch.optim.Adam(RimNet(**NET).parameters(), lr=1e-4)
    module = PackedModule(packed, RimNet(**NET), torch.ones(k, 2), adam, lambda: [1e-4] * k)
    return timed_fit(module, PackDataModule(members(cache, k), cache, 32), steps)


def packed_bare(cache, k: int, steps: int) -> float:
    torch.manual_seed(0)
    packed = PackedRimNet.from_models([RimNet(**NET) for _ in range(k)])
    data = PackDataModule(members(cache, k), cache, 32)
    device = torch.device("cuda" if DEVICE[0] == "gpu" else "cpu")
    packed = packed.to(device)
    opt = MemberAdam(packed)
    weights = torch.ones(k, 2, device=device)
    lrs = torch.full((k,), 1e-4, dtype=torch.float64, device=device)
    t0 = 0.0
    for n, batch in enumerate(data.train_dataloader()):
        if n == 3:
            t0 = time.perf_counter()
        if n == steps + 3:
            break
        moved = {key: v.to(device) for key, v in batch.items() if torch.is_tensor(v)}
        batch = data.on_after_batch_transfer({**batch, **moved}, 0)
        full = torch.as_tensor(batch["sizes"] == 32, device=device)
        opt.zero_grad()
        logits = packed(batch["x"].float())
        (weighted_ce(logits, batch["y"], weights) * full).sum().backward()
        opt.step(full, lrs)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - t0) / steps


def sequential_lightning(cache, steps: int) -> float:
    torch.manual_seed(0)
    ids = cache.patients["patient_id"].tolist()
    dm = PatchDataModule(cache, ["phase", "flair"], train_ids=ids)
    return timed_fit(RimNetModule(RimNet(**NET), channels_last=False), dm, steps)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cache", default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--k", type=int, nargs="+", default=[1, 12])
    ap.add_argument("--widths", type=int, nargs=3, default=[2, 2, 2])
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median shown)")
    args = ap.parse_args()
    NET["widths"], DEVICE[0] = args.widths, args.device
    if args.cache:
        cache = load_cache(args.cache)
    else:
        root = Path(tempfile.mkdtemp(prefix="rimnet-host-"))
        csv = generate_cohort(root / "smoke", "smoke", seed=0, progress=False)
        cache = build_cache(
            csv, root / "cache", PreprocessConfig.paper(elastic_copies=0), progress=False
        )
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, pytorch_lightning {pl.__version__}; {args.device}, "
        f"RimNet widths {args.widths}, batch 32 per member, {args.steps} timed steps after 3 "
        "warm-up steps"
    )
    seq = sequential_lightning(cache, args.steps)
    print(f"{'K':>3s} {'packed Lightning ms':>20s} {'bare loop ms':>13s} {'ratio':>6s} "
          f"{'K sequential Lightning ms':>26s} {'packed Lightning patches/s':>27s}")  # fmt: skip
    for k in args.k:
        lits, bares = [], []
        for _ in range(args.repeats):  # interleaved: a shared machine's drift hits both alike
            lits.append(packed_lightning(cache, k, args.steps))
            bares.append(packed_bare(cache, k, args.steps))
        lit, bare = statistics.median(lits), statistics.median(bares)
        rate = 32 * k / (lit / 1000)
        print(f"{k:3d} {lit:20.1f} {bare:13.1f} {lit / bare:5.2f}x {k * seq:26.1f} {rate:27.0f}")


if __name__ == "__main__":
    main()
