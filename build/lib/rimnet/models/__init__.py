"""Networks: RimNet, its unimodal baseline, and K of them packed into one module."""

from rimnet.models.packed import PackedRimNet
from rimnet.models.rimnet import RimNet

__all__ = ["PackedRimNet", "RimNet"]
