"""``rimnet train`` with the arithmetic of bfloat16 autocast emulated in float32.

    python experiments/precision/emulated_bf16.py <rimnet train overrides>

On a CPU without native bfloat16 (no AVX512-BF16, AMX or Arm BF16), ``trainer.precision=bf16-mixed``
runs emulated kernels ~30x slower than float32, too slow to measure its accuracy over a study.
This wrapper trains in float32 at float32 speed but rounds, as ``torch.autocast("cpu",
torch.bfloat16)`` does with oneDNN's kernels: every convolution's and linear layer's inputs and
weights to bfloat16 (its products then accumulate in float32, as oneDNN's do), its output to
bfloat16, batch norm's output to bfloat16, and the gradients that flow back through each of them
to bfloat16. Max pooling commutes with that rounding and the loss stays float32 (autocast's
float32 list), so the forward pass holds the values bf16-mixed holds; the backward pass rounds
the gradients at the same layers. What it does not reproduce: the order of the additions inside
oneDNN's bfloat16 kernels (round-off of float32 accumulators, the same size as float32's own).

Example:
    python experiments/precision/emulated_bf16.py experiment=phase_flair seed=1 fold=0 \
        model.compile=false
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _RoundBF16(torch.autograd.Function):
    """Round to bfloat16 (round-to-nearest-even) and back, in both directions of autograd."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return x.to(torch.bfloat16).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return grad.to(torch.bfloat16).to(grad.dtype)


def bf16(x: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to bfloat16 and back to its dtype; its gradient rounded likewise."""
    return _RoundBF16.apply(x) if x.dtype == torch.float32 else x


def install() -> None:
    """Route ``F.conv3d``, ``F.linear`` and ``F.batch_norm`` (what ``nn.Conv3d``,
    ``nn.Linear`` and ``nn.BatchNorm3d`` call) through bfloat16 rounding."""
    conv3d, linear, batch_norm = F.conv3d, F.linear, F.batch_norm

    def conv3d_bf16(input, weight, bias=None, *args, **kwargs):  # noqa: ANN001, ANN202
        return bf16(conv3d(bf16(input), bf16(weight), bias, *args, **kwargs))

    def linear_bf16(input, weight, bias=None):  # noqa: ANN001, ANN202
        return bf16(linear(bf16(input), bf16(weight), bias))

    def batch_norm_bf16(input, *args, **kwargs):  # noqa: ANN001, ANN202
        return bf16(batch_norm(input, *args, **kwargs))

    F.conv3d, F.linear, F.batch_norm = conv3d_bf16, linear_bf16, batch_norm_bf16


if __name__ == "__main__":
    install()
    from rimnet.train import main

    main()
