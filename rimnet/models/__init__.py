"""Networks: RimNet and its unimodal baseline."""

from rimnet.models.rimnet import RimNet

__all__ = ["RimNet"]
