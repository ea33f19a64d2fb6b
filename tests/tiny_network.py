"""A network that exists only for the tests: one 3-D convolution and a linear layer. It shows what
a new architecture needs: this module (registered) and its YAML (``conf_tiny/model/tiny.yaml``)."""

from __future__ import annotations

import torch
from torch import nn

from rimnet.models import register


@register
class TinyNet(nn.Module):
    """Conv(3³) → ReLU → global average → linear, on patches (B, n_modalities, S, S, S)."""

    def __init__(self, n_modalities: int = 2, width: int = 4) -> None:
        super().__init__()
        self.config = {"n_modalities": n_modalities, "width": width}
        self.conv = nn.Conv3d(n_modalities, width, 3, padding=1)
        self.head = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))
