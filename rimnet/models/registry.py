"""Networks by name: what checkpoints and bundles record, and the only classes rimnet builds from
them.

A checkpoint's ``rimnet`` entry (:data:`CHECKPOINT_KEY`) and a bundle name their network by import
path (``network``) and keyword arguments (``model``). :func:`build_network` rebuilds it, but only
for a class registered with :func:`register` (every network under ``rimnet.models`` is, on
import): a name from a file is never a licence to import arbitrary code. A network offers packing
(several members trained as one module, ``engine=packed``) by a class method ``packed(k)``.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from rimnet.errors import RimnetError

CHECKPOINT_KEY = "rimnet"  # the checkpoint entry that describes the run for inference
NETWORKS: dict[str, type[nn.Module]] = {}


class NetworkError(RimnetError):
    """A network name that is not registered, or keyword arguments it does not take."""


def network_name(cls: type) -> str:
    """The import path that names ``cls`` in checkpoints and bundles.

    Example:
        >>> from rimnet.models import RimNet
        >>> network_name(RimNet)
        'rimnet.models.rimnet.RimNet'
    """
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: let checkpoints and bundles name ``cls`` (see :func:`build_network`).

    Example:
        >>> @register
        ... class Tiny(nn.Module):
        ...     def __init__(self, n_modalities: int = 1) -> None:
        ...         super().__init__()
        ...         self.config = {"n_modalities": n_modalities}
    """
    NETWORKS[network_name(cls)] = cls
    return cls


def network_class(name: str) -> type[nn.Module]:
    """The registered class of ``name`` (a ``rimnet.models`` module is imported first, which
    registers its networks); anything else is a :class:`NetworkError`."""
    if name not in NETWORKS and name.startswith("rimnet.models."):
        module, _, attr = name.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), attr, None)
        except ImportError:
            obj = None
        if obj is not None and isinstance(obj, type):
            name = network_name(obj)  # a re-export such as rimnet.models.RimNet
    if name not in NETWORKS:
        raise NetworkError(
            f"network {name!r} is not one rimnet builds (registered: {', '.join(sorted(NETWORKS))}"
            "); a new network is registered with rimnet.models.register"
        )
    return NETWORKS[name]


def build_network(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """A registered network from its name and keyword arguments.

    Example:
        >>> net = build_network("rimnet.models.rimnet.RimNet", {"widths": [2, 2, 2]})
    """
    cls = network_class(name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise NetworkError(f"network {name} cannot be built from {kwargs} ({exc})") from None


def network_config(net: nn.Module, fallback: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments that rebuild ``net``: its ``config`` attribute if it has one, else
    ``fallback`` (those it was built with)."""
    return dict(getattr(net, "config", None) or fallback)


def offers_packing(name: str) -> bool:
    """Whether the network ``name`` can be packed (a ``packed(k)`` class method)."""
    try:
        return callable(getattr(network_class(name), "packed", None))
    except NetworkError:
        return False
