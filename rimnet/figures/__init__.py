"""Every picture rimnet draws, drawn with matplotlib and written one way.

- :mod:`rimnet.figures.curves`: ROC and precision-recall curves (Figs 5 and 6);
- :mod:`rimnet.figures.patients`: patient-wise figures (Figs 3, 7 and 8);
- :mod:`rimnet.figures.lesions`: lesion-wise figures (Figs 9 and 10, the re-rating montage);
- :mod:`rimnet.figures.slices`: slices through images (the QC report's cards and overview, the
  registration checkerboard of ``rimnet prepare``).

Drawing functions take values the stages computed (they compute nothing of their own but
layout), return what a test can check against the data, and write through :func:`save` (a PNG
file, atomically) or :func:`png` (PNG bytes, for HTML and W&B).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

DPI = 120
# One colour per class and decision, in every figure and report.
COLOURS = {
    "rim+": "#dc143c",
    "rim-": "#4682b4",
    "excluded": "#969696",
    "correct": "#8fbc8f",
    "wrong": "#b8860b",
}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as a PNG at ``path`` (atomically) and close it.

    Example:
        >>> fig, ax = pyplot().subplots()
        >>> save(fig, "roc.png")  # doctest: +SKIP
    """
    from rimnet.io import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return Path(path)


def png(fig: Any, dpi: int = DPI) -> bytes:
    """``fig`` as PNG bytes, and close it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return buf.getvalue()


def pixels(data: bytes) -> Any:
    """PNG bytes (from :func:`png`) as an ``(H, W, channels)`` uint8 array, e.g. for W&B."""
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))
