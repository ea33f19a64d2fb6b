"""Training-step throughput (patches/s): TorchIO per-sample DataLoader path vs the batched path.

    python benchmarks/train_throughput.py [--cache DIR] [--steps 20] [--widths 8 16 32]
    [--workers 0] [--packed-k 1 4] [--amp bf16] [--packed-only] [--device all|cpu|cuda]

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
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from rimnet.data.cache import PreprocessConfig, build_cache, load_cache
from rimnet.data.datamodule import PatchDataModule
from rimnet.models import PackedRimNet, RimNet
from rimnet.synth.cohort import generate_cohort


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
    args = ap.parse_args()
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


def data_path_rows(args: argparse.Namespace, devices: list[torch.device]) -> None:
    """TorchIO per-sample DataLoader path vs the batched path, data alone and training step."""
    if args.cache:
        cache = load_cache(args.cache)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="rimnet-bench-"))
        csv = generate_cohort(tmp / "smoke", "smoke", progress=False)
        cfg = PreprocessConfig.paper(elastic_copies=1)
        cache = build_cache(csv, tmp / "smoke-cache", cfg, progress=False)
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
