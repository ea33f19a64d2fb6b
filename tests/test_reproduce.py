"""`make reproduce-table3 SCALE=smoke` end to end (slow: ~7 minutes on 2 cores; `make test-all`)."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_reproduce_table3_smoke(tmp_path):
    env = {**os.environ, "RIMNET_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    cmd = [
        sys.executable,
        "experiments/reproduce_table3.py",
        "--scale",
        "smoke",
        "--out",
        str(tmp_path / "table3"),
    ]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-3000:]
    t3 = pd.read_csv(tmp_path / "table3" / "table3.csv")
    assert t3.row.tolist() == [
        "Single phase model",
        "RimNet: phase + FLAIR",
        "Expert #1",
        "Expert #2",
        "RimNet: phase + FLAIR",
        "Expert #1",
        "Expert #2",
    ]
    assert len(pd.read_csv(tmp_path / "table3" / "auc.csv")) == 6
    assert len(pd.read_csv(tmp_path / "table3" / "delong_pairs.csv")) == 15
    for fig in (
        "fig5_roc_pr.png",
        "fig6_intercenter.png",
        "fig7_patientwise.png",
        "fig8_confusion.png",
        "fig3_rim_burden.png",
        "fig9_errors_consensus.png",
        "fig10_location.png",
        "examples_errors.png",
    ):
        assert (tmp_path / "table3" / fig).stat().st_size > 10_000
    readme = (tmp_path / "table3" / "README.md").read_text()
    assert "Wall time" in readme and "![fig3_rim_burden.png](fig3_rim_burden.png)" in readme
    assert "Supplementary Table 1" in readme
    assert (tmp_path / "table3" / "rerating_list.csv").exists()
