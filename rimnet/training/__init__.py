"""Training: the LightningModule, the learning-rate staircase and the training jobs.

The names below load on first use, so importing a submodule (a config check, say) does not import
Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "RimNetModule": "rimnet.training.module",
    "Staircase": "rimnet.training.schedule",
    "StaircaseLR": "rimnet.training.schedule",
}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
