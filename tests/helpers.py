"""Compose the real Hydra configs in tests (as lightning-hydra-template does)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from rimnet.config import CONFIG_DIR, normalise_overrides, register_resolvers

CONF = CONFIG_DIR


def compose_train(overrides: list[str], root: Path, output_dir: Path) -> DictConfig:
    """The train config with ``overrides``, data under ``root``/data and the run in
    ``output_dir``."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=normalise_overrides(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root)
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


def read_offline_wandb(path: Path, timeout_s: float = 60.0) -> tuple[list[dict], dict]:
    """History rows and summary of an offline W&B run file (``run-*.wandb``, LevelDB log format).

    ``run.finish()`` can return while W&B's service still writes the file's last block; the file
    is read until it holds the run's ``exit`` record (at most ``timeout_s``)."""
    import time

    deadline = time.monotonic() + timeout_s
    records = _wandb_records(path)
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        assert time.monotonic() < deadline, f"{path} has no exit record after {timeout_s} s"
        time.sleep(0.2)
        records = _wandb_records(path)
    return _history_and_summary(records)


def _wandb_records(path: Path) -> list:
    """The protobuf records of a W&B run file, as far as it is written."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, buf, chunks = path.read_bytes(), 7, b"", []  # 7-byte ":W&B" file header
    block = 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):
            pos += left
            continue
        if pos + 7 + length > len(data):  # a chunk the service is still writing
            break
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind in (2, 3):
            buf = chunk if kind == 2 else buf + chunk
        elif kind == 4:
            chunks.append(buf + chunk)
    records = []
    for c in chunks:
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(c)
        records.append(rec)
    return records


def _history_and_summary(records: list) -> tuple[list[dict], dict]:
    """History rows and the merged summary of W&B records."""
    import json

    history, summary = [], {}
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append(
                {
                    (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                    for i in rec.history.item
                }
            )
        elif kind == "summary":
            summary.update(
                {
                    (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                    for i in rec.summary.update
                }
            )
    return history, summary


def headless_browser() -> str:
    """A Chromium for headless checks: found on PATH, else installed from the distribution's
    packages (root with apt-get); else the calling test is skipped, saying why."""
    import os
    import shutil
    import subprocess

    import pytest

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("no Chromium on PATH and no root apt-get to install it")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode or not shutil.which("chromium"):
        pytest.skip(f"Chromium could not be installed: {done.stderr.strip()[-300:]}")
    return shutil.which("chromium")
