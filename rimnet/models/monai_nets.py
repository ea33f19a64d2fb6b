"""Baselines from MONAI, trained through the same protocol as RimNet: a 3D DenseNet and a 3D
ResNet-18 over the modalities stacked as channels (early fusion), two logits out.

Both are registered networks (checkpoints and bundles name them) and do not pack
(``engine=auto`` trains them one after the other). Their defaults suit 28³ patches:

- :class:`DenseNet3D`: DenseNet-121's stem (7³ convolution, stride 2, max-pool) and bottleneck
  layers with its first three dense blocks (6, 12, 24). Its fourth block would come after a third
  transition that halves a 1³ map: 28³ is too small for DenseNet-121 itself.
- :class:`ResNet3D`: ResNet-18's four stages of two basic blocks, with a 3³ stem of stride 2 and
  no max-pool (28³ → 14³ → 7³ → 4³ → 2³), at a quarter of its channels by default (16-128) so
  that it trains on a CPU; ``widen_factor: 1.0`` is ResNet-18's 64-512.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rimnet.models.registry import register


@register
class DenseNet3D(nn.Module):
    """MONAI's ``DenseNet`` (3D) over stacked modalities.

    Args:
        n_modalities: input channels, one per modality.
        init_features: channels of the stem (DenseNet-121: 64).
        growth_rate: channels each dense layer adds (DenseNet-121: 32).
        block_config: dense layers per block (DenseNet-121: 6, 12, 24, 16).
        bn_size: bottleneck width factor of each dense layer.
        dropout: dropout after each dense layer.

    Example:
        >>> DenseNet3D(2)(torch.zeros(2, 2, 28, 28, 28)).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        n_modalities: int = 2,
        init_features: int = 32,
        growth_rate: int = 16,
        block_config: Sequence[int] = (6, 12, 24),
        bn_size: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        from monai.networks.nets import DenseNet

        self.n_modalities = n_modalities
        self.config = {
            "n_modalities": int(n_modalities),
            "init_features": int(init_features),
            "growth_rate": int(growth_rate),
            "block_config": [int(b) for b in block_config],
            "bn_size": int(bn_size),
            "dropout": float(dropout),
        }
        self.net = DenseNet(
            spatial_dims=3,
            in_channels=n_modalities,
            out_channels=2,
            init_features=init_features,
            growth_rate=growth_rate,
            block_config=tuple(block_config),
            bn_size=bn_size,
            dropout_prob=dropout,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) for patches (B, n_modalities, S, S, S)."""
        return self.net(x)


@register
class ResNet3D(nn.Module):
    """MONAI's ResNet-18 (3D) over stacked modalities.

    Args:
        n_modalities: input channels, one per modality.
        widen_factor: channel multiplier of 64/128/256/512 (1.0 is ResNet-18).
        stem_size: kernel of the first convolution (ResNet-18: 7).
        stem_stride: stride of the first convolution.
        max_pool: the max-pool after the stem (ResNet-18 has it).

    Example:
        >>> ResNet3D(2)(torch.zeros(2, 2, 28, 28, 28)).shape
        torch.Size([2, 2])
    """

    def __init__(
        self,
        n_modalities: int = 2,
        widen_factor: float = 0.25,
        stem_size: int = 3,
        stem_stride: int = 2,
        max_pool: bool = False,
    ) -> None:
        super().__init__()
        from monai.networks.nets import resnet18

        self.n_modalities = n_modalities
        self.config = {
            "n_modalities": int(n_modalities),
            "widen_factor": float(widen_factor),
            "stem_size": int(stem_size),
            "stem_stride": int(stem_stride),
            "max_pool": bool(max_pool),
        }
        self.net = resnet18(
            spatial_dims=3,
            n_input_channels=n_modalities,
            num_classes=2,
            widen_factor=widen_factor,
            conv1_t_size=stem_size,
            conv1_t_stride=stem_stride,
            no_max_pool=not max_pool,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) for patches (B, n_modalities, S, S, S)."""
        return self.net(x)
