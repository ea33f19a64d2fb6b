"""The command line before any work: --help, --cfg and config errors answer without torch or
Lightning, and a user's own config folder extends the config tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = """
import sys
from rimnet.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in ("torch", "pytorch_lightning", "lightning") if m in sys.modules)
print("HEAVY:", ",".join(heavy), file=sys.stderr)
sys.exit(code or 0)
"""


def rimnet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RIMNET_ROOT": str(cwd), "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, "-c", RUN, *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["train", "--help"], 0, ["rimnet train"]),
        (["train", "--cfg", "job"], 0, ["experiment_name: phase_flair"]),
        (["train", "trainer.max_epochs=-3"], 2, ["error: invalid configuration", "max_epochs"]),
        (["train", "data.batch_size=-1"], 2, ["error: data.batch_size", "data.loader.batch_size"]),
        (["evaluate", "--help"], 0, ["rimnet evaluate"]),
        (["preprocess", "--help"], 0, ["built-in list, ['phase', 't2star', 'flair']"]),
    ],
)
def test_answers_without_torch(args, code, words, tmp_path):
    out = rimnet(*args, cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == code, text[-2000:]
    for word in words:
        assert word in text, text[-2000:]
    assert "HEAVY: \n" in out.stderr, out.stderr[-500:]


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_an_experiment_of_ones_own(how, tmp_path):
    (tmp_path / "myconf" / "experiment").mkdir(parents=True)
    (tmp_path / "myconf" / "experiment" / "my_exp.yaml").write_text(
        "# @package _global_\nexperiment_name: my_exp\nmodalities: [flair, phase]\n"
    )
    where = (
        ["--config-dir", str(tmp_path / "myconf")]
        if how == "--config-dir"
        else [f"hydra.searchpath=[file://{tmp_path / 'myconf'}]"]
    )
    out = rimnet("train", *where, "experiment=my_exp", "--cfg", "job", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "experiment_name: my_exp" in out.stdout
    wrong = rimnet("train", *where, "experiment=my_exq", "--cfg", "job", cwd=tmp_path)
    assert wrong.returncode == 2 and "experiment=my_exq is not a choice" in wrong.stderr
    assert "my_exp" in wrong.stderr


COMPLETE = """
eval "$(rimnet completion bash)"
for line in "rimnet tr" "rimnet train data=sm" "rimnet train experiment=phase_" \\
        "rimnet evaluate sweep"; do
    COMP_LINE="$line"; COMP_WORDS=($line); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
    COMP_POINT=${#COMP_LINE}
    _rimnet_complete
    echo "$line -> ${COMPREPLY[*]}"
done
"""


def test_tab_completion_of_stages_groups_and_keys(tmp_path):
    """``eval "$(rimnet completion bash)"`` completes commands, then each Hydra stage's groups,
    choices and keys; --hydra-help tells how to install it."""
    bin_dir = str(Path(sys.executable).parent)  # where the rimnet console script is
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RIMNET_ROOT": str(tmp_path)}
    out = subprocess.run(["bash", "-c", COMPLETE], env=env, capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    answers = dict(line.split(" -> ") for line in out.stdout.splitlines())
    assert answers["rimnet tr"] == "train"
    assert answers["rimnet train data=sm"] == "data=smoke"
    assert answers["rimnet train experiment=phase_"].split() == [
        "experiment=phase_flair",
        "experiment=phase_t2star",
        "experiment=phase_t2star_flair",
    ]
    assert answers["rimnet evaluate sweep"] == "sweep_dir="
    helped = rimnet("train", "--hydra-help", cwd=tmp_path)
    assert 'eval "$(rimnet completion bash)"' in helped.stdout and "site-packages" not in (
        helped.stdout
    )
