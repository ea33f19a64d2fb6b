"""The machine's defaults: bfloat16 where the processor computes it natively, and when a run
compiles its network."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from helpers import compose_train
from omegaconf import OmegaConf

from rimnet.errors import ConfigError
from rimnet.hardware import PRECISION_ENV, cpu_flags, cpu_precision, native_bf16
from rimnet.models import RimNet
from rimnet.train import train
from rimnet.training.module import COMPILE_MIN_STEPS, RimNetModule


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ({"avx2", "avx512f", "avx512_bf16"}, True),  # AVX512-BF16 (Zen 4, Cooper Lake)
        ({"avx512f", "amx_tile", "amx_bf16"}, True),  # AMX (Sapphire Rapids)
        ({"fp", "asimd", "bf16"}, True),  # Arm BF16 (Graviton 3)
        ({"avx2", "avx512f", "avx512bw"}, False),  # AVX-512 alone emulates bfloat16
        (set(), False),
    ],
)
def test_native_bfloat16_is_read_from_the_flags_not_the_vendor(flags, native):
    assert native_bf16(frozenset(flags)) is native
    assert cpu_precision(frozenset(flags)) == ("bf16-mixed" if native else "32-true")


def test_this_machines_flags_decide_the_default(monkeypatch):
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    assert cpu_precision() == ("bf16-mixed" if native_bf16(cpu_flags()) else "32-true")
    monkeypatch.setenv(PRECISION_ENV, "64-true")
    assert cpu_precision() == "64-true"
    monkeypatch.setenv(PRECISION_ENV, "fast")
    with pytest.raises(ConfigError, match="RIMNET_CPU_PRECISION='fast' is not a precision"):
        cpu_precision()


def test_the_cpu_trainer_defaults_to_the_machines_precision_and_an_override_wins(
    monkeypatch, tmp_path
):
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.delenv("RIMNET_COMPILE", raising=False)
    cfg = compose_train(["+experiment=phase_flair", "data=smoke"], tmp_path, tmp_path)
    assert cfg.trainer.precision == cpu_precision()
    assert cfg.model.compile == "auto"
    cfg = compose_train(
        ["+experiment=phase_flair", "data=smoke", "trainer.precision=32-true",
         "model.compile=false"], tmp_path, tmp_path,
    )  # fmt: skip
    assert cfg.trainer.precision == "32-true" and cfg.model.compile is False
    monkeypatch.setenv("RIMNET_COMPILE", "true")
    cfg = compose_train(["+experiment=phase_flair", "data=smoke"], tmp_path, tmp_path)
    assert cfg.model.compile is True


@pytest.mark.parametrize(
    ("mode", "steps", "device", "compiles"),
    [
        ("auto", COMPILE_MIN_STEPS, "cpu", True),
        ("auto", COMPILE_MIN_STEPS - 1, "cpu", False),
        ("auto", 10_000, "cuda", False),  # a GPU step is launch-bound: the packed engine's job
        (True, 1, "cpu", True),
        (False, 10_000, "cpu", False),
    ],
)
def test_auto_compiles_cpu_runs_long_enough_to_pay(mode, steps, device, compiles):
    module = RimNetModule(RimNet(1, widths=(2, 2, 2)), compile=mode)
    assert module.compiles(steps, device) is compiles


def test_compile_takes_true_false_or_auto():
    with pytest.raises(ConfigError, match="compile must be true, false or auto, not 'yes'"):
        RimNetModule(RimNet(1, widths=(2, 2, 2)), compile="yes")


@pytest.mark.parametrize(
    "compiled",
    [False, pytest.param(True, marks=pytest.mark.slow)],  # a cold Inductor cache: ~1-2 min
)
def test_a_bfloat16_run_trains_and_checkpoints_the_plain_network(
    compiled, monkeypatch, tmp_path, smoke_project
):
    """The machine's default path on a run of a few steps: bf16-mixed autocast, eager or with
    the compiled training step; the checkpoint holds the plain network's keys and loads into
    float32."""
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    precision = "bf16-mixed"  # emulated (slow) without native bfloat16: the steps stay few
    cfg = compose_train(
        ["+experiment=phase", "data=smoke", "logger=csv", "trainer.max_epochs=1",
         f"trainer.precision={precision}", f"model.compile={str(compiled).lower()}",
         "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1",
         "model.net.widths=[2,2,4]"], smoke_project, tmp_path / "run",
    )  # fmt: skip
    metrics = train(cfg)
    assert 0.0 <= metrics["test/auroc"] <= 1.0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(k.startswith(("net.", "ce_weight")) for k in ckpt["state_dict"])
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])
    net = RimNet(1, widths=(2, 2, 4))
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    assert all(p.dtype == torch.float32 for p in net.parameters())
    resolved = OmegaConf.load(tmp_path / "run" / "resolved_config.yaml")
    assert resolved.trainer.precision == precision


def test_a_bad_machine_precision_is_an_error_line(tmp_path):
    env = {"RIMNET_CPU_PRECISION": "fast", "PATH": "/usr/bin:/bin", "RIMNET_ROOT": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "rimnet.train", "+experiment=phase", "data=smoke"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-2000:]
    assert "error:" in out.stderr and "RIMNET_CPU_PRECISION='fast'" in out.stderr
    assert "Traceback" not in out.stderr
