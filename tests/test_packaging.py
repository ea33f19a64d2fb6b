"""A built wheel carries the configs and runs every stage outside the source tree; the console
script dispatches every stage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """The wheel built from this checkout, installed (without dependencies) into a folder that
    comes first on PYTHONPATH; returns the environment that runs it."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    for name in ("rimnet", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(tmp / "dist"), "-q"], check=True, cwd=tmp)
    (wheel,) = (tmp / "dist").glob("rimnet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    configs = sorted(p.relative_to(REPO / "conf") for p in (REPO / "conf").rglob("*.yaml"))
    missing = [str(c) for c in configs if f"rimnet/conf/{c.as_posix()}" not in names]
    assert not missing, f"configs not in the wheel (list their folder in pyproject.toml): {missing}"
    assert any(n.endswith("licenses/LICENSE") for n in names)
    site = tmp / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel],
        check=True,
    )
    return {**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "offline"}


def _run(env: dict, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def test_wheel_trains_outside_the_source_tree(installed, smoke_project, tmp_path):
    """From a folder outside the checkout, the installed package finds its configs inside itself
    and trains a fast_dev_run of the session's smoke project (whose cohort and cache it checks
    and reuses: their fingerprints are the package's own)."""
    where = _run(installed, "-c", "import rimnet.config as c; print(c.CONFIG_DIR)", cwd=tmp_path)
    assert where.stdout.strip().endswith(os.path.join("site", "rimnet", "conf"))
    help_ = _run(installed, "-m", "rimnet.train", "--help", cwd=tmp_path).stdout
    assert "phase_flair" in help_ and "engine" in help_
    cache = smoke_project / "data" / "cache" / "smoke" / "patches.bin"
    stamp = cache.stat().st_mtime_ns
    env = {**installed, "RIMNET_ROOT": str(smoke_project)}
    out = _run(env, "-m", "rimnet.train", "experiment=flair", "data=smoke", "logger=csv",
               f"hydra.run.dir={tmp_path / 'run'}", "+trainer.fast_dev_run=true",
               cwd=tmp_path)  # fmt: skip
    assert (tmp_path / "run" / "resolved_config.yaml").is_file(), out.stdout[-2000:]
    assert cache.stat().st_mtime_ns == stamp  # the cache was reused, not rebuilt


def test_console_script_dispatches_every_stage(tmp_path):
    from rimnet.cli import COMMANDS

    env = {**os.environ, "WANDB_MODE": "offline"}
    cli = [sys.executable, "-m", "rimnet.cli"]
    top = subprocess.run([*cli, "--help"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert top.returncode == 0 and all(c in top.stdout for c in COMMANDS)
    version = subprocess.run([*cli, "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.stdout.startswith("rimnet 0.")
    for stage in COMMANDS:
        out = subprocess.run(
            [*cli, stage, "--help"], env=env, capture_output=True, text=True, cwd=tmp_path
        )
        assert out.returncode == 0, (stage, out.stderr[-2000:])
        assert f"rimnet {stage}" in out.stdout or "usage: rimnet" in out.stdout, stage
    bad = subprocess.run([*cli, "trian"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "unknown command 'trian'" in bad.stderr
    assert not list(tmp_path.iterdir())  # --help writes nothing


def test_experiment_with_or_without_plus(tmp_path):
    from helpers import compose_train

    for spelling in ("experiment=flair", "+experiment=flair"):
        cfg = compose_train([spelling], tmp_path, tmp_path / "out")
        assert cfg.experiment_name == "flair" and list(cfg.modalities) == ["flair"]


def test_missing_launcher_extra_is_named(monkeypatch):
    import importlib.util

    from rimnet import train

    assert train.missing_launcher(["hydra/launcher=joblib", "fold=0"]) is None  # dev installs it
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    message = train.missing_launcher(["hydra/launcher=submitit_slurm"])
    assert "pip install 'rimnet[slurm]'" in message


def test_every_subpackage_ships_in_the_wheel():
    """pyproject.toml lists the packages by hand: each folder of rimnet/ with an __init__.py."""
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "rimnet").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
