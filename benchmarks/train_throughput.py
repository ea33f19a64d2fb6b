"""Training-step throughput (patches/s): TorchIO per-sample DataLoader path vs the batched path.

    python benchmarks/train_throughput.py [--cache DIR] [--steps 20] [--widths 8 16 32]
    [--workers 0]

Same model, same batch size, same cache, measured side by side in one run, on CPU and on CUDA when
present. Also prints the data path alone (no model), where the difference is clearest. Without
``--cache`` the smoke cohort is generated and preprocessed under /tmp.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torch.nn.functional as F

from rimnet.data.cache import PreprocessConfig, build_cache, load_cache
from rimnet.data.datamodule import PatchDataModule
from rimnet.models import RimNet
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


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cache", default=None)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--widths", type=int, nargs=3, default=[8, 16, 32])
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the TorchIO path")
    args = ap.parse_args()
    if args.cache:
        cache = load_cache(args.cache)
    else:
        csv = generate_cohort("/tmp/rimnet-bench/smoke", "smoke", progress=False)
        cache = build_cache(
            csv, "/tmp/rimnet-bench/smoke-cache", PreprocessConfig(elastic_copies=1), progress=False
        )
    pats = cache.patients.patient_id.tolist()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU "
        f"threads, torch {torch.__version__}"
        + (f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")
    )
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
