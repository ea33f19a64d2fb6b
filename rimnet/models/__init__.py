"""Networks: RimNet, its unimodal baseline, K of them packed into one module, and the registry
through which checkpoints and bundles name their network."""

from rimnet.models.packed import PackedRimNet
from rimnet.models.registry import build_network, network_name, register
from rimnet.models.rimnet import RimNet

__all__ = ["PackedRimNet", "RimNet", "build_network", "network_name", "register"]
