"""The stages depend one way: synth -> data -> models -> training -> evaluation -> inference reads
models and data only. Checked on the import statements of the sources."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rimnet"
# stage folder -> modules it must not import
FORBIDDEN = {
    "training": ("rimnet.synth", "rimnet.evaluation", "rimnet.inference"),
    "inference": ("rimnet.training", "rimnet.config"),
    "evaluation": ("rimnet.config", "rimnet.training", "rimnet.inference"),
    "models": ("rimnet.training", "rimnet.inference", "rimnet.evaluation", "rimnet.synth"),
    "data": ("rimnet.training", "rimnet.inference", "rimnet.evaluation", "rimnet.models"),
    # drawing only: the stages compute what the figures show
    "figures": ("rimnet.training", "rimnet.inference", "rimnet.evaluation", "rimnet.config"),
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("stage", sorted(FORBIDDEN))
def test_a_stage_does_not_import_a_later_one(stage):
    found = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in (PACKAGE / stage).rglob("*.py")
        for name in imported_modules(path)
        if name.startswith(FORBIDDEN[stage])
    }
    assert not found, sorted(found)


def test_every_figure_is_drawn_by_the_figures_package():
    """One module family draws (with matplotlib): no other module imports a drawing library."""
    drawing = ("matplotlib", "PIL")
    found = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in PACKAGE.rglob("*.py")
        if "figures" not in path.relative_to(PACKAGE).parts[:1]
        for name in imported_modules(path)
        if name.startswith(drawing)
    }
    assert not found, sorted(found)
