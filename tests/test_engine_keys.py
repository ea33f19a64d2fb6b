"""Nothing is dropped silently: every trainer key and callback of ``conf/`` (and the Lightning
flags users add most) is honoured or refused, by both engines, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import compose_train
from omegaconf import OmegaConf, open_dict

from rimnet.config import CONFIG_DIR
from rimnet.errors import ConfigError
from rimnet.training.checks import HONOURED, REFUSED, check_pack
from rimnet.training.engine import instantiate_list

CONF = Path(CONFIG_DIR)
# Flags users add on the command line (the template's habits), with a value a pack cannot honour.
ADDED = {
    "gradient_clip_val": 1.0,
    "accumulate_grad_batches": 4,
    "check_val_every_n_epoch": 2,
    "max_steps": 100,
    "fast_dev_run": True,
    "limit_train_batches": 3,
    "limit_val_batches": 2,
    "deterministic": True,
}


def _conf_trainer_keys() -> set[str]:
    keys = set()
    for path in (CONF / "trainer").glob("*.yaml"):
        keys |= {k for k in OmegaConf.load(path) if k != "defaults"}
    return keys | set(OmegaConf.load(CONF / "train.yaml").stages.final.trainer)


def test_every_trainer_key_is_honoured_or_refused_by_the_packed_engine():
    keys = _conf_trainer_keys() | set(ADDED)
    unknown = sorted(k for k in keys if k not in HONOURED and k not in REFUSED)
    assert not unknown, f"trainer keys the packed engine neither honours nor refuses: {unknown}"


@pytest.mark.parametrize("key", sorted(k for k in ADDED if k in REFUSED))
def test_a_key_a_pack_cannot_honour_is_an_error(key, tmp_path):
    cfg = compose_train(["+experiment=phase_flair", "data=smoke", "logger=csv"], tmp_path, tmp_path)
    check_pack(cfg)  # the defaults pack
    with open_dict(cfg):
        cfg.trainer[key] = ADDED[key]
    with pytest.raises(ConfigError, match=f"trainer.{key}=.*engine=sequential"):
        check_pack(cfg)


def test_callbacks_are_honoured_or_refused(tmp_path):
    cfg = compose_train(["+experiment=phase_flair", "data=smoke", "logger=csv"], tmp_path, tmp_path)
    for path in (CONF / "callbacks").glob("*.yaml"):
        assert set(OmegaConf.load(path)) <= set(cfg.callbacks) or path.stem != "default"
    check_pack(cfg)  # every callback of conf/callbacks runs per member or on the pack's Trainer
    with open_dict(cfg):
        cfg.callbacks.early_stopping = {
            "_target_": "pytorch_lightning.callbacks.EarlyStopping",
            "monitor": "val/loss",
        }
    with pytest.raises(ConfigError, match="callbacks.early_stopping .* not run per member"):
        check_pack(cfg)


def test_the_sequential_engine_gives_every_key_to_lightning(tmp_path):
    """The sequential engine builds Lightning's Trainer from the whole trainer config."""
    import hydra

    cfg = compose_train(["+experiment=phase_flair", "data=smoke", "logger=csv"], tmp_path, tmp_path)
    with open_dict(cfg):
        for key in ("gradient_clip_val", "accumulate_grad_batches", "limit_train_batches"):
            cfg.trainer[key] = ADDED[key]
    trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=instantiate_list(cfg.callbacks), logger=False
    )
    assert trainer.gradient_clip_val == 1.0 and trainer.accumulate_grad_batches == 4
    assert trainer.limit_train_batches == 3
