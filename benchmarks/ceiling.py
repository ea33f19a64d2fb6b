"""The ceiling of one RimNet training step on this processor.

    python benchmarks/ceiling.py [--widths 8 16 32] [--modalities 1 2 3] [--batch 32]
        [--precision fp32 bf16] [--repeats 5]

Two things, per network (widths × modalities) and precision:

- **multiply-adds** of one training step, counted from the layers the network runs (forward
  hooks on every ``Conv3d`` and ``Linear``): the forward pass, plus the backward pass's gradient
  of the weights (as many as the forward) and of the inputs (as many again, except for layers
  whose input needs no gradient: the first convolution of each branch, fed by the patch);
- **the ceiling**: each of those layers run alone on its own shapes (same batch, same memory
  format, forward and backward, as many repeats as asked, the fastest kept), their times summed:
  what this CPU sustains on exactly the network's convolutions, with nothing else in between
  (no batch norm, activation, pooling, optimizer or framework). Patches/s at the ceiling =
  batch / that sum.

Also the machine's matrix-multiply peak (a 1024² ``mm``) for reference.
``benchmarks/train_throughput.py`` reports the model-only step and the training loop against
this ceiling.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch
from torch import nn

from rimnet.models import RimNet

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class Layer:
    """One weight layer as the network ran it: the module (a copy's template), its input shape
    and whether the backward pass needs the gradient of its input."""

    module: nn.Module
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    input_grad: bool

    @property
    def forward_macs(self) -> int:
        w = self.module.weight
        per_output = w[0].numel()  # c_in × k³ (conv) or c_in (linear) multiply-adds per output
        return int(torch.Size(self.out_shape).numel() * per_output)

    @property
    def train_macs(self) -> int:
        return self.forward_macs * (3 if self.input_grad else 2)


def layers(net: nn.Module, batch: int, patch: int = 28) -> list[Layer]:
    """The ``Conv3d`` and ``Linear`` layers of one training forward pass of ``net``, in order.

    Example:
        >>> found = layers(RimNet(1, widths=(8, 16, 32)), batch=2)
        >>> len(found), found[0].input_grad, found[1].input_grad
        (11, False, True)
    """
    found: list[Layer] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0]
        found.append(Layer(module, tuple(x.shape), tuple(output.shape), x.requires_grad))

    handles = [
        m.register_forward_hook(hook)
        for m in net.modules()
        if isinstance(m, (nn.Conv3d, nn.Linear))
    ]
    try:
        n = net.n_modalities if hasattr(net, "n_modalities") else 1
        net(torch.zeros(batch, n, patch, patch, patch))
    finally:
        for h in handles:
            h.remove()
    return found


def step_macs(found: list[Layer]) -> tuple[int, int]:
    """(forward, training step) multiply-adds of a batch."""
    return sum(x.forward_macs for x in found), sum(x.train_macs for x in found)


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks and caches its kernel on the first call
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def layer_seconds(layer: Layer, dtype: torch.dtype, repeats: int = 5) -> float:
    """Fastest forward + backward of one layer alone, on its shapes, in ``dtype``; 5-D tensors in
    channels-last-3d (the training default)."""
    module = _copy(layer.module).to(dtype)
    x = torch.randn(layer.in_shape, dtype=dtype)
    if x.dim() == 5:
        module = module.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    x.requires_grad_(layer.input_grad)
    grad = torch.randn(layer.out_shape, dtype=dtype)
    if grad.dim() == 5:
        grad = grad.contiguous(memory_format=torch.channels_last_3d)

    def step() -> None:
        module.zero_grad(set_to_none=True)
        module(x).backward(grad)

    return _best_seconds(step, repeats)


def _copy(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.Conv3d):
        c = module
        return nn.Conv3d(
            c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding,
            bias=c.bias is not None,
        )  # fmt: skip
    return nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)


def ceiling(net: nn.Module, batch: int, precision: str, repeats: int = 5) -> dict[str, float]:
    """The network's step multiply-adds and the ceiling's patches/s and GMAC/s in ``precision``
    (``fp32`` or ``bf16``)."""
    found = layers(net, batch)
    fwd, train = step_macs(found)
    seconds = sum(layer_seconds(x, DTYPES[precision], repeats) for x in found)
    return {
        "macs_per_patch": train / batch,
        "forward_macs_per_patch": fwd / batch,
        "seconds": seconds,
        "patches_per_s": batch / seconds,
        "gmacs": train / seconds / 1e9,
    }


def matmul_peak(precision: str, n: int = 1024, repeats: int = 5) -> float:
    """GMAC/s of an ``n``² matrix product in ``precision``: the processor's dense peak, roughly."""
    a = torch.randn(n, n, dtype=DTYPES[precision])
    b = torch.randn(n, n, dtype=DTYPES[precision])
    return n**3 / _best_seconds(lambda: torch.mm(a, b), repeats) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--widths", type=int, nargs=3, action="append", default=None)
    ap.add_argument("--modalities", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--precision", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    widths = args.widths or [[8, 16, 32], [32, 64, 128]]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    for p in args.precision:
        print(f"matmul peak {p}: {matmul_peak(p, repeats=args.repeats):.1f} GMAC/s")
    print(
        f"{'widths':>10s} {'mod':>3s} {'prec':>4s} {'MMAC/patch':>10s} {'ceiling p/s':>11s} "
        f"{'GMAC/s':>7s}"
    )
    for w in widths:
        for n in args.modalities:
            net = RimNet(n, widths=w)
            for p in args.precision:
                c = ceiling(net, args.batch, p, args.repeats)
                name = "/".join(map(str, w))
                print(
                    f"{name:>10s} {n:3d} {p:>4s} {c['macs_per_patch'] / 1e6:10.1f} "
                    f"{c['patches_per_s']:11.1f} {c['gmacs']:7.1f}"
                )


if __name__ == "__main__":
    main()
