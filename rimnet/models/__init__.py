"""Networks: RimNet, its unimodal baseline, K of them packed into one module, MONAI baselines,
and the registry through which checkpoints and bundles name their network."""

from rimnet.models.monai_nets import DenseNet3D, ResNet3D
from rimnet.models.packed import PackedRimNet
from rimnet.models.registry import build_network, network_name, register
from rimnet.models.rimnet import RimNet

__all__ = [
    "DenseNet3D",
    "PackedRimNet",
    "ResNet3D",
    "RimNet",
    "build_network",
    "network_name",
    "register",
]
