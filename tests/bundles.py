"""A bundle around freshly initialised networks, for tests that need one without training."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rimnet.data.cache import PreprocessConfig
from rimnet.inference.bundle import Bundle


def untrained_bundle(
    nets: Sequence[torch.nn.Module], modalities: list[str], threshold: float = 0.5
) -> Bundle:
    """A :class:`Bundle` of ``nets`` (members sharing one ``config``) with the paper's patch
    and candidate rules."""
    patches = PreprocessConfig.paper()
    return Bundle(
        modalities=modalities,
        model=dict(nets[0].config),
        members=[net.state_dict() for net in nets],
        threshold=threshold,
        patch_size=patches.patch_size,
        context=patches.context,
        rules=dict(vars(patches.rules)),
    )
