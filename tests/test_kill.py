"""kill -9 at a random moment, then the same command again: the result equals an uninterrupted
run's."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data=smoke",
    "logger=csv",
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=1",
]

pytestmark = pytest.mark.slow


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RIMNET_ROOT": str(root),
        "WANDB_MODE": "offline",
        "PYTHONUNBUFFERED": "1",
    }


def _kill_when(cmd: list[str], env: dict, ready, timeout: float = 600) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds (or fail if it ends first)."""
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    start = time.monotonic()
    while not ready():
        assert proc.poll() is None, "the process ended before the moment to kill it"
        assert time.monotonic() - start < timeout
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _run(cmd: list[str], env: dict) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def test_killed_preprocess_reruns_to_the_same_cache(smoke_csv, tmp_path):
    def cmd(cache: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "rimnet.preprocess",
            f"cohort={smoke_csv}",
            f"cache_dir={cache}",
            "params.elastic_copies=1",
            "progress=false",
        ]

    env = _env(tmp_path)
    _run(cmd(tmp_path / "straight"), env)
    cut = tmp_path / "cut"

    def writing() -> bool:  # the temporary cache folder holds some patches
        return any(
            p.name.startswith(".cut.")
            and (p / "patches.bin").is_file()
            and (p / "patches.bin").stat().st_size > 0
            for p in tmp_path.iterdir()
        )

    _kill_when(cmd(cut), env, writing)
    assert not cut.exists() and [
        p for p in tmp_path.iterdir() if p.name.startswith(".cut.") and p.suffix == ".tmp"
    ]
    _run(cmd(cut), env)
    assert not [
        p for p in tmp_path.iterdir() if p.name.startswith(".cut.") and p.suffix == ".tmp"
    ]  # orphan removed
    for name in ("patches.bin", "lesions.csv", "patients.csv"):
        assert _md5(cut / name) == _md5(tmp_path / "straight" / name), name


def test_killed_nested_job_reruns_to_the_same_predictions(tmp_path):
    cmd = [sys.executable, "-m", "rimnet.train", "-m", "+experiment=phase", "fold=0", *TINY]
    _run(cmd, _env(tmp_path / "straight"))
    cut = tmp_path / "cut"
    job = cut / "outputs" / "sweeps" / "smoke" / "phase" / "fold0"
    _kill_when(cmd, _env(cut), lambda: (job / "inner1" / "checkpoints" / "last.ckpt").is_file())
    assert not (job / "predictions.csv").exists()
    _run(cmd, _env(cut))
    straight = tmp_path / "straight" / "outputs" / "sweeps" / "smoke" / "phase" / "fold0"
    assert (job / "predictions.csv").read_bytes() == (straight / "predictions.csv").read_bytes()
