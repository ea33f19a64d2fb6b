"""Training-step throughput (patches/s) against the processor's ceiling, the TorchIO per-sample
DataLoader path against the batched path, and packed models.

    python benchmarks/train_throughput.py [--cache DIR] [--steps 20] [--widths 8 16 32]
    [--workers 0] [--packed-k 1 4] [--amp bf16] [--packed-only] [--device all|cpu|cuda]
    python benchmarks/train_throughput.py --ceiling [--ceiling-widths 8,16,32 32,64,128]
        [--precision fp32 bf16] [--steps 20]

``--ceiling`` prints, per width and precision (phase + FLAIR, batch 32, channels-last-3d): the
multiply-adds of a training step and the ceiling (``benchmarks/ceiling.py``: the network's own
convolution and linear layers run alone on this CPU), then the model-only step (random tensors,
forward + backward + Adam; eager and ``torch.compile``) and the whole training loop (a Lightning
``Trainer`` built from the real configs, ``rimnet train experiment=phase_flair data=smoke``, timed
from step to step after warm-up; eager and compiled), each as patches/s and a percentage of the
ceiling. bf16 rows run under ``torch.autocast`` (``trainer.precision=bf16-mixed``); on a CPU
without native bfloat16 they are emulated and slow (``--precision fp32`` skips them).

Same model, same batch size, same cache, measured side by side in one run, on CPU and on CUDA when
present. Also prints the data path alone (no model), where the difference is clearest, and the
model-only step of K RimNets trained one after the other against the same K packed into one
:class:`~rimnet.models.PackedRimNet` (``--packed-k``; batch 32 per member). Without ``--cache``
the smoke cohort is generated and preprocessed in a fresh temporary folder. ``--amp bf16`` runs the
packed rows under bfloat16 autocast with channels-last-3d tensors (the packed engine's GPU setting);
``--packed-only`` skips the data-path rows (no cohort, no TorchIO needed).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from rimnet.data.cache import PatchCache, PreprocessConfig, build_cache, load_cache
from rimnet.data.datamodule import PatchDataModule
from rimnet.hardware import cpu_name, native_bf16
from rimnet.models import PackedRimNet, RimNet
from rimnet.synth.cohort import generate_cohort

REPO = Path(__file__).resolve().parents[1]


def measure(
    dm: PatchDataModule,
    device: torch.device,
    steps: int,
    widths,
    train_model: bool,
    channels_last: bool,
) -> float:
    torch.manual_seed(0)
    net = RimNet(len(dm.modalities), widths=widths).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    loader = dm.train_dataloader()
    done, t0, epoch = 0, None, 0
    while done < steps + 2:
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            x, y, item, ep = batch
            x, y = x.to(device, non_blocking=True), y.to(device)
            x, y, _ = dm.on_after_batch_transfer((x, y, item.to(device), ep), 0)
            if train_model:
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            done += 1
            if done == 2:
                t0 = time.perf_counter()  # two warm-up steps
            if done == steps + 2:
                break
        epoch += 1
    return steps * dm.batch_size / (time.perf_counter() - t0)


def packed_rates(
    k: int, device: torch.device, steps: int, widths, batch: int, amp: str
) -> tuple[float, float]:
    """Model-only training steps (random tensors): patches/s of K separate RimNets stepped one
    after the other, and of the same K packed into one module (``amp``: "fp32" or "bf16", the
    latter with bfloat16 autocast and channels-last-3d)."""
    fmt = torch.channels_last_3d if amp == "bf16" else torch.contiguous_format
    nets = [RimNet(2, widths=widths).to(device, memory_format=fmt) for _ in range(k)]
    packed = PackedRimNet.from_models(nets).to(memory_format=fmt)
    x = torch.randn(k, batch, 2, 28, 28, 28, device=device)
    if amp == "bf16":
        x = x.flatten(0, 1).to(memory_format=fmt).unflatten(0, (k, batch))
    cast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16")
    y = torch.randint(0, 2, (k, batch), device=device)
    opts = [torch.optim.Adam(n.parameters(), 1e-4) for n in nets]
    packed_opt = torch.optim.Adam(packed.parameters(), 1e-4)

    def separate() -> None:
        for i, (net, opt) in enumerate(zip(nets, opts)):
            opt.zero_grad()
            with cast:
                logits = net(x[i])
            F.cross_entropy(logits.float(), y[i]).backward()
            opt.step()

    def together() -> None:
        packed_opt.zero_grad()
        with cast:
            logits = packed(x).float()
        F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").div(batch).backward()
        packed_opt.step()

    rates = []
    for step in (separate, together):
        for i in range(steps + 2):
            if i == 2:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(steps * k * batch / (time.perf_counter() - t0))
    return rates[0], rates[1]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cache", default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--widths", type=int, nargs=3, default=[8, 16, 32])
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the TorchIO path")
    ap.add_argument("--packed-k", type=int, nargs="*", default=[1, 4], help="K of the packed rows")
    ap.add_argument("--amp", choices=["fp32", "bf16"], default="fp32", help="packed precision")
    ap.add_argument("--packed-only", action="store_true", help="skip the data-path rows")
    ap.add_argument("--device", choices=["all", "cpu", "cuda"], default="all")
    ap.add_argument("--ceiling", action="store_true", help="the ceiling rows only (CPU)")
    ap.add_argument("--ceiling-widths", nargs="+", default=["8,16,32", "32,64,128"])
    ap.add_argument("--loop-epochs", type=int, default=2, help="timed epochs of the loop rows")
    ap.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    args = ap.parse_args()
    if args.ceiling:
        ceiling_rows(args)
        return
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    devices = [d for d in devices if args.device in ("all", d.type)]
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU "
        f"threads, torch {torch.__version__}"
        + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
    if not args.packed_only:
        data_path_rows(args, devices)
    print(
        f"\nmodel only, RimNet widths {args.widths}, {args.amp}, batch {args.batch_size} per member"
    )
    print(
        f"{'device':8s} {'K':>3s} {'K separate patches/s':>21s} {'packed patches/s':>17s} "
        f"{'per member':>11s} {'ratio':>7s}"
    )
    for device in devices:
        for k in args.packed_k:
            alone, packed = packed_rates(
                k, device, args.steps, args.widths, args.batch_size, args.amp
            )
            print(
                f"{device.type:8s} {k:3d} {alone:21.1f} {packed:17.1f} {packed / k:11.1f} "
                f"{packed / alone:6.2f}x"
            )


def smoke_cache(args: argparse.Namespace) -> PatchCache:
    """``--cache``, else the smoke cohort generated and preprocessed in a fresh temporary folder."""
    if args.cache:
        return load_cache(args.cache)
    tmp = Path(tempfile.mkdtemp(prefix="rimnet-bench-"))
    csv = generate_cohort(tmp / "smoke", "smoke", progress=False)
    cfg = PreprocessConfig.paper(elastic_copies=1)
    return build_cache(csv, tmp / "smoke-cache", cfg, progress=False)


def model_rate(widths, precision: str, compiled: bool, steps: int, batch: int = 32) -> float:
    """Patches/s of model-only training steps (RimNet, phase + FLAIR, random tensors,
    channels-last-3d, Adam) in ``precision``; ``compiled``: under ``torch.compile`` (its
    compilation is part of the warm-up, not timed)."""
    torch.manual_seed(0)
    net = RimNet(2, widths=widths).to(memory_format=torch.channels_last_3d)
    fn = torch.compile(net) if compiled else net
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.randn(batch, 2, 28, 28, 28).contiguous(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 2, (batch,))
    cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        opt.zero_grad()
        with cast:
            logits = fn(x)
        F.cross_entropy(logits.float(), y).backward()
        opt.step()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - t0)


class EpochTimer(pl.Callback):
    """Times whole training epochs after the first (which compiles, warms caches and allocators):
    every step, the epoch's end and Lightning's bookkeeping included."""

    def __init__(self) -> None:
        self.seconds, self.patches, self._t0, self._n = 0.0, 0, 0.0, 0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._t0, self._n = time.perf_counter(), 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._n += len(batch[1])

    def on_train_epoch_end(self, trainer, module) -> None:
        if trainer.current_epoch > 0:
            self.seconds += time.perf_counter() - self._t0
            self.patches += self._n


def loop_rate(cache: PatchCache, widths, precision: str, compiled: bool, epochs: int) -> float:
    """Patches/s of the real training loop: ``rimnet train experiment=phase_flair`` on one fold's
    outer training set of the cache, built from the configs; ``epochs`` timed epochs after one
    untimed."""
    sys.path.insert(0, str(REPO / "tests"))
    import hydra
    from helpers import compose_train

    from rimnet.data.splits import make_splits
    from rimnet.train import single_spec
    from rimnet.training.engine import build_run

    prec = {"fp32": "32-true", "bf16": "bf16-mixed"}[precision]
    out = Path(tempfile.mkdtemp(prefix="rimnet-loop-"))
    overrides = [
        "experiment=phase_flair", "data=smoke", "logger=csv", "inner_fold=null", "test=false",
        f"model.net.widths=[{','.join(map(str, widths))}]", f"trainer.precision={prec}",
        f"model.compile={str(compiled).lower()}", f"schedule.fixed_epochs=[{epochs + 1},0,0,0]",
        "~callbacks.progress_bar", "+trainer.enable_progress_bar=false",
        "+trainer.enable_checkpointing=false", "~callbacks.model_checkpoint",
    ]  # fmt: skip
    cfg = compose_train(overrides, out, out)
    splits = make_splits(cache.patients, cache.lesions, 4, 3, 0)
    parts = build_run(single_spec(cfg, splits, {}), cache)
    timer = EpochTimer()
    trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=[*parts.callbacks, timer], logger=False
    )
    trainer.fit(parts.module, datamodule=parts.dm)
    return timer.patches / timer.seconds


def ceiling_rows(args: argparse.Namespace) -> None:
    """Model-only and loop patches/s against the ceiling, per width and precision."""
    from ceiling import ceiling, layers, matmul_peak, step_macs

    print(f"machine: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for p in args.precision:
        print(f"matrix-multiply peak {p}: {matmul_peak(p):.1f} GMAC/s")
    cache = smoke_cache(args)
    print(
        "phase + FLAIR, batch 32, channels-last-3d; patches/s (and % of the ceiling)\n"
        f"{'widths':>9s} {'prec':>4s} {'MMAC/patch':>10s} {'ceiling':>8s} {'model':>14s} "
        f"{'model compiled':>15s} {'loop':>14s} {'loop compiled':>14s} {'loop/model':>10s}"
    )
    for w in args.ceiling_widths:
        widths = [int(v) for v in w.split(",")]
        _, macs = step_macs(layers(RimNet(2, widths=widths), 32))
        for p in args.precision:
            slow = p == "bf16" and not native_bf16()  # emulated: a few steps are enough
            steps = max(2, args.steps // (10 if slow else 1) // (4 if widths[0] > 8 else 1))
            top = ceiling(RimNet(2, widths=widths), 32, p, repeats=1 if slow else 3)
            rates = [
                model_rate(widths, p, False, steps),
                model_rate(widths, p, True, steps),
                loop_rate(cache, widths, p, False, args.loop_epochs),
                loop_rate(cache, widths, p, True, args.loop_epochs),
            ]
            cells = [f"{r:6.1f} ({r / top['patches_per_s']:4.0%})" for r in rates]
            print(
                f"{w.replace(',', '/'):>9s} {p:>4s} {macs / 32 / 1e6:10.1f} "
                f"{top['patches_per_s']:8.1f} {cells[0]:>14s} {cells[1]:>15s} {cells[2]:>14s} "
                f"{cells[3]:>14s} {rates[3] / rates[1]:9.0%}",
                flush=True,
            )


def data_path_rows(args: argparse.Namespace, devices: list[torch.device]) -> None:
    """TorchIO per-sample DataLoader path vs the batched path, data alone and training step."""
    cache = smoke_cache(args)
    pats = cache.patients.patient_id.tolist()
    print(
        f"cache {cache.path}: {len(cache.lesions)} patches; batch {args.batch_size}; RimNet "
        f"widths {args.widths}; phase + FLAIR"
    )
    print(
        f"{'device':8s} {'what':22s} {'torchio patches/s':>18s} {'batched patches/s':>18s} "
        f"{'ratio':>7s}"
    )
    for device in devices:
        cl = device.type == "cpu"
        for what, train_model in (("data path only", False), ("training step", True)):
            rates = {}
            for mode in ("torchio", "batched"):
                dm = PatchDataModule(
                    cache,
                    ["phase", "flair"],
                    pats,
                    [],
                    [],
                    batch_size=args.batch_size,
                    augment=mode,
                    num_workers=args.workers if mode == "torchio" else 0,
                    channels_last=cl,
                )
                rates[mode] = measure(dm, device, args.steps, args.widths, train_model, cl)
            ratio = rates["batched"] / rates["torchio"]
            print(
                f"{device.type:8s} {what:22s} {rates['torchio']:18.1f} {rates['batched']:18.1f} "
                f"{ratio:6.2f}x"
            )


if __name__ == "__main__":
    main()
