"""Models, LightningModule, staircase, augmentation paths and the training entry point."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import compose_train, read_offline_wandb
from omegaconf import OmegaConf

from rimnet.config import cv_experiments, experiment_configs
from rimnet.data.augment import (
    N_TURNED,
    N_VARIANTS,
    ROTATIONS,
    VariantSchedule,
    batched_variants,
    decode,
    rotate,
    split_extras,
    torchio_variant,
)
from rimnet.data.contract import MODALITIES
from rimnet.data.datamodule import PatchDataModule
from rimnet.models import DenseNet3D, RimNet
from rimnet.train import train
from rimnet.training.schedule import Staircase

EXPERIMENTS = {
    "phase_flair": 2,
    "phase_t2star": 2,
    "t2star_flair": 2,
    "phase": 1,
    "t2star": 1,
    "flair": 1,
}
ROOT_REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def root(smoke_project) -> Path:
    """The session's smoke project: its cohort and cache are built once (runs go to tmp_path)."""
    return smoke_project


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_experiment_configs_compose_and_instantiate(experiment, root, tmp_path):
    cfg = compose_train([f"+experiment={experiment}", "data=smoke"], root, tmp_path)
    module = hydra.utils.instantiate(cfg.model)
    assert module.net.n_modalities == EXPERIMENTS[experiment] == len(cfg.modalities)
    assert cfg.modalities[0] == experiment.split("_")[0]
    assert module(torch.zeros(2, len(cfg.modalities), 28, 28, 28)).shape == (2, 2)
    assert module.configure_optimizers().param_groups[0]["lr"] == cfg.schedule.rates[0]
    resolved = cfg.copy()
    OmegaConf.resolve(resolved)  # in place, as `rimnet train --cfg job --resolve` prints it
    assert list(resolved.data.preprocess.modalities) == list(MODALITIES)
    assert EXPERIMENTS == {
        n: len(experiment_configs()[n].modalities) for n in cv_experiments()
    }  # read from conf/


@pytest.mark.parametrize("experiment", ["phase_t2star_flair", "densenet_phase_flair",
                                        "resnet_phase_flair"])  # fmt: skip
def test_configurations_beyond_the_paper_compose_and_stay_out_of_table3(experiment, root, tmp_path):
    """``study: beyond`` files: their network and modalities as the catalogue names them, a
    forward pass of the right width, and not among Table 3's configurations."""
    from rimnet.config import beyond_experiments, experiment_catalogue

    cfg = compose_train([f"experiment={experiment}", "data=smoke"], root, tmp_path)
    module = hydra.utils.instantiate(cfg.model)
    entry = experiment_catalogue()[experiment]
    assert type(module.net).__name__ == entry["network"] and entry["study"] == "beyond"
    assert list(cfg.modalities) == entry["modalities"] and cfg.experiment_name == experiment
    assert module(torch.zeros(2, len(cfg.modalities), 28, 28, 28)).shape == (2, 2)
    assert experiment in beyond_experiments() and experiment not in cv_experiments()


def test_rimnet_architecture():
    net = RimNet(2, widths=(32, 64, 128))
    assert net.main.block2[0].in_channels == 64  # early fusion: 32 main + 32 second-branch channels
    assert net.second.block2[0].in_channels == 32
    assert (
        net.main.block1[0].bias is None and net.main.close.bias is not None
    )  # BN follows the conv
    assert (
        net.main.close.out_channels == 1 and net.head[0].in_features == 2 * 27
    )  # late fusion of 1×3×3×3 each
    assert [m.out_features for m in net.head if isinstance(m, torch.nn.Linear)] == [256, 128, 64, 2]
    assert sum(isinstance(m, torch.nn.Tanh) for m in net.main.modules()) == 6
    uni = RimNet(1, widths=(8, 16, 32))
    assert uni.second is None and uni.head[0].in_features == 27
    with pytest.raises(ValueError):
        RimNet(0)


def test_n_branch_rimnet_is_the_papers_network_for_one_and_two_modalities():
    """One and two modalities keep their state-dict keys (no ``others``) and the paper's forward,
    written out here; a third modality gets a branch of its own that joins early and late."""
    torch.manual_seed(0)
    small = {"widths": (4, 8, 8), "fc": (16, 8)}
    one, two, three = (RimNet(n, **small).eval() for n in (1, 2, 3))
    for net, prefixes in ((one, {"main", "head"}), (two, {"main", "second", "head"})):
        assert {k.split(".")[0] for k in net.state_dict()} == prefixes
    x = torch.randn(3, 3, 28, 28, 28)
    m1, s1 = two.main.block1(x[:, :1]), two.second.block1(x[:, 1:2])
    m = two.main.close(two.main.block3(two.main.block2(torch.cat([m1, s1], 1))))
    s = two.second.close(two.second.block3(two.second.block2(s1)))
    with torch.no_grad():
        reference = two.head(torch.cat([m.flatten(1), s.flatten(1)], 1))
        torch.testing.assert_close(two(x[:, :2]), reference)
        assert one(x[:, :1]).shape == (3, 2)
    assert {k.split(".")[0] for k in three.state_dict()} == {"main", "second", "others", "head"}
    assert three.main.block2[0].in_channels == 3 * 4 and three.head[0].in_features == 3 * 27
    x.requires_grad_(True)
    three(x)[:, 1].sum().backward()
    assert (x.grad.abs().sum(dim=(0, 2, 3, 4)) > 0).all()  # every modality reaches the output


@pytest.mark.parametrize(
    "fusion, block2_in, head_in, first_in",
    [("early+late", 16, 54, 1), ("late", 8, 54, 1), ("early", 16, 27, 1), ("stacked", 8, 27, 2)],
)
def test_fusion_ablations_join_the_modalities_where_they_say(fusion, block2_in, head_in, first_in):
    net = RimNet(2, widths=(8, 16, 32), fusion=fusion)
    assert net.main.block2[0].in_channels == block2_in and net.head[0].in_features == head_in
    assert net.main.block1[0].in_channels == first_in
    x = torch.randn(3, 2, 28, 28, 28, requires_grad=True)
    net(x)[:, 1].sum().backward()
    assert (x.grad.abs().sum(dim=(0, 2, 3, 4)) > 0).all()  # both modalities reach the output
    if fusion != "early+late":
        with pytest.raises(ValueError, match="engine=sequential"):
            RimNet.packed(2, **net.config)


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_fast_dev_run_every_experiment(experiment, root, tmp_path):
    cfg = compose_train(
        [f"+experiment={experiment}", "data=smoke", "logger=csv", "+trainer.fast_dev_run=true"],
        root,
        tmp_path,
    )
    metrics = train(cfg)
    assert "test/loss" in metrics
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert set(preds.columns) >= {
        "lesion_id",
        "patient_id",
        "site",
        "label",
        "prob",
        "experiment",
        "fold",
    }
    assert preds.experiment.unique().tolist() == [experiment]


def test_three_modalities_train_one_branch_each(root, tmp_path):
    """Phase, T2* and FLAIR together: the N-branch RimNet trains and predicts."""
    cfg = compose_train(
        ["modalities=[phase,t2star,flair]", "experiment_name=phase_t2star_flair", "data=smoke",
         "logger=csv", "+trainer.fast_dev_run=true"],
        root,
        tmp_path,
    )  # fmt: skip
    assert "test/loss" in train(cfg)
    ckpt = torch.load(next((tmp_path / "checkpoints").glob("*.ckpt")), weights_only=True)
    assert ckpt["rimnet"]["model"]["n_modalities"] == 3
    assert any(k.startswith("net.others.0.") for k in ckpt["state_dict"])


def test_cli_writes_run_folder(root, tmp_path):
    env = {**os.environ, "RIMNET_ROOT": str(root), "WANDB_MODE": "offline"}
    cmd = [
        sys.executable,
        "-m",
        "rimnet.train",
        "+experiment=phase",
        "data=smoke",
        "logger=csv",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        f"hydra.run.dir={tmp_path}/run",
    ]
    out = subprocess.run(cmd, cwd=ROOT_REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run = tmp_path / "run"
    assert (run / ".hydra" / "config.yaml").exists() and (run / "resolved_config.yaml").exists()
    assert (run / "checkpoints" / "last.ckpt").exists() and (run / "predictions.csv").exists()
    assert "test AUROC" in out.stdout and str(run) in out.stdout
    log = (run / "train.log").read_text()  # the job log holds what the terminal showed
    assert "test AUROC" in log and "training patches" in log and f"run folder: {run}" in log


def test_help_lists_config_groups():
    out = subprocess.run(
        [sys.executable, "-m", "rimnet.train", "--help"],
        cwd=ROOT_REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0
    for group in ("data:", "model:", "trainer:", "logger:", "experiment:"):
        assert group in out.stdout


def test_overfit_a_handful_of_patches(smoke_cache):
    torch.manual_seed(0)
    o = smoke_cache.lesions.query("augmentation == 'none' and excluded == ''")
    rows = np.concatenate([o.index[o.label == 1][:4], o.index[o.label == 0][:4]])
    x = torch.from_numpy(
        np.asarray(smoke_cache.patches[rows][:, [0, 2], 2:30, 2:30, 2:30], dtype=np.float32)
    )
    y = torch.as_tensor(smoke_cache.lesions.label.to_numpy()[rows])
    net = RimNet(2, widths=(8, 16, 32))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(60):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_staircase_plateau_decays_and_stops():
    s = Staircase(patience=3)
    losses = [1.0, 0.9, 0.8, 0.85, 0.81, 0.82]  # 3 epochs without a new minimum -> decay
    actions = [s.step(v) for v in losses]
    assert actions == ["continue"] * 5 + ["decay"] and s.lr == 5e-5
    actions = [s.step(v) for v in (0.7, 0.75, 0.75, 0.75)]  # new minimum resets the count
    assert actions == ["continue", "continue", "continue", "decay"] and s.lr == 2.5e-5
    assert [s.step(1.0) for _ in range(3)] == ["continue", "continue", "decay"] and s.lr == 1e-5
    assert [s.step(1.0) for _ in range(3)] == ["continue", "continue", "stop"]
    assert s.epochs_per_rate == [6, 4, 3, 3] and s.stopped


def test_staircase_fixed_schedule():
    s = Staircase(fixed_epochs=[2, 1, 0, 2])
    assert [s.rate_for_epoch(e) for e in range(6)] == [1e-4, 1e-4, 5e-5, 1e-5, 1e-5, None]
    assert [s.step() for _ in range(5)] == ["continue", "decay", "decay", "continue", "stop"]
    assert s.epochs_per_rate == [2, 1, 0, 2]
    with pytest.raises(ValueError):
        Staircase(fixed_epochs=[1, 2])


def test_fixed_schedule_drives_the_optimiser(root, tmp_path):
    cfg = compose_train(
        [
            "+experiment=flair",
            "data=smoke",
            "logger=csv",
            "schedule.fixed_epochs=[1,2,0,0]",
            "trainer.max_epochs=10",
            "+trainer.limit_train_batches=1",
            "+trainer.limit_val_batches=1",
            "test=false",
        ],
        root,
        tmp_path,
    )
    train(cfg)
    log = pd.read_csv(tmp_path / "csv" / "metrics.csv")
    lrs = log.dropna(subset=["lr"]).groupby("epoch").lr.first().tolist()
    first, second = cfg.schedule.rates[:2]
    assert lrs == pytest.approx([first, second, second])  # three epochs, then the schedule ends


def test_no_inner_fold_trains_on_the_whole_outer_training_set(root, tmp_path, caplog):
    """``inner_fold=null``: every outer training patient, the fixed schedule, the last weights."""
    cfg = compose_train(
        ["+experiment=flair", "data=smoke", "logger=csv", "inner_fold=null",
         "schedule.fixed_epochs=[1,1,0,0]", "+trainer.limit_train_batches=1"],
        root,
        tmp_path,
    )  # fmt: skip
    caplog.set_level(logging.INFO, logger="rimnet")
    assert "test/auroc" in train(cfg)
    assert "single-all: " in caplog.text and " 0 validation lesions" in caplog.text
    outer = json.loads(Path(cfg.data.splits_file).read_text())["outer"][0]
    lrs = pd.read_csv(tmp_path / "csv" / "metrics.csv").dropna(subset=["lr"])
    assert lrs.groupby("epoch").lr.first().tolist() == pytest.approx(cfg.schedule.rates[:2])
    assert sorted((tmp_path / "checkpoints").glob("*.ckpt")) == [
        tmp_path / "checkpoints" / "final.ckpt",
        tmp_path / "checkpoints" / "last.ckpt",
    ]
    ckpt = torch.load(tmp_path / "checkpoints" / "final.ckpt", weights_only=True)
    assert ckpt["rimnet"]["stage"] == "single-all"
    saved = OmegaConf.load(tmp_path / "resolved_config.yaml")
    assert saved.run.stage == "single-all" and saved.trainer.limit_val_batches == 0
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert set(preds.patient_id) == set(outer["test"])


def test_variants_do_not_repeat_before_108_epochs():
    s = VariantSchedule(n_items=50, seed=3)
    seen = np.stack([s.variants(np.arange(50), e) for e in range(N_VARIANTS)], axis=1)
    assert all(len(set(row)) == N_VARIANTS for row in seen)
    assert np.array_equal(s.variants(np.arange(50), N_VARIANTS), s.variants(np.arange(50), 0))
    x = torch.randn(1, 1, 32, 32, 32)
    crops = {
        batched_variants(x, torch.tensor([v]), 28).numpy().tobytes() for v in range(N_VARIANTS)
    }
    assert len(crops) == N_VARIANTS  # all 108 variants differ
    assert decode(0) == (None, (-2, -2, -2)) and decode(107) == (2, (2, 2, 2))


def test_cube_rotations_are_the_24_turns_and_no_mirror():
    x = torch.randn(1, 5, 5, 5)  # no symmetry: distinct turns give distinct arrays
    turned = [rotate(x, r) for r in range(len(ROTATIONS))]
    assert len(ROTATIONS) == 24 and torch.equal(turned[0], x)
    assert len({t.numpy().tobytes() for t in turned}) == 24
    mirror = x.flip(-1)  # a reflection is not a rotation
    assert not any(torch.equal(t, mirror) for t in turned)
    quarter = ROTATIONS.index(((0, 2, 1), (2,)))  # 90 degrees about the first axis
    assert torch.equal(rotate(x, quarter), torch.rot90(x, -1, (2, 3)))


def test_a_rotating_schedule_keeps_the_flips_and_shifts_and_draws_every_turn():
    plain, turning = VariantSchedule(50, seed=3), VariantSchedule(50, seed=3, rotate=True)
    both = [
        (plain.variants(np.arange(50), e), turning.variants(np.arange(50), e)) for e in range(9)
    ]
    assert all(np.array_equal(a, b % N_VARIANTS) for a, b in both)
    assert {int(r) for _, b in both for r in b // N_VARIANTS} == set(range(24))


def test_modality_dropout_blanks_one_channel_of_the_share_drawn():
    s = VariantSchedule(400, seed=1, modality_dropout=0.3, channels=2)
    _, _, dropped = split_extras(s.variants(np.arange(400), 5))
    assert 0.22 < (dropped > 0).mean() < 0.38 and set(np.unique(dropped)) == {0, 1, 2}
    alone = VariantSchedule(400, seed=1, modality_dropout=0.3, channels=1)
    assert np.array_equal(alone.variants(np.arange(400), 5), VariantSchedule(400, 1).variants(
        np.arange(400), 5))  # fmt: skip  # one modality: nothing to blank
    x = torch.randn(3, 2, 32, 32, 32)
    out = batched_variants(x, torch.tensor([0, N_TURNED, 2 * N_TURNED]), 28)
    kept = batched_variants(x, torch.zeros(3, dtype=torch.long), 28)
    assert torch.equal(out[0], kept[0])
    assert (out[1, 0] == 0).all() and torch.equal(out[1, 1], kept[1, 1])
    assert (out[2, 1] == 0).all() and torch.equal(out[2, 0], kept[2, 0])


def test_torchio_and_batched_augmentation_agree(smoke_cache):
    x = torch.from_numpy(np.asarray(smoke_cache.patches[:16], dtype=np.float32))
    variants = (
        torch.arange(0, 108, 7)[:16]
        + N_VARIANTS * torch.tensor([0] * 8 + list(range(16, 24)))
        + N_TURNED * torch.tensor([0, 1, 2, 0] * 4)
    )
    fast = batched_variants(x, variants, 28)
    ref = torch.stack([torchio_variant(x[i], int(v), 28) for i, v in enumerate(variants)])
    assert torch.equal(fast, ref)


@pytest.mark.parametrize(
    "modalities, rotate", [(["phase", "flair"], False), (["flair", "t2star"], True)]
)
def test_each_channel_of_a_training_batch_is_its_cached_modality(smoke_cache, modalities, rotate):
    """The second branch sees the named modality, flipped, shifted and turned as the first."""
    pats = smoke_cache.patients.patient_id.tolist()
    dm = PatchDataModule(
        smoke_cache, modalities, train_ids=pats, batch_size=8, seed=3, rotate=rotate
    )
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    batch = next(iter(loader))
    x, _, item = dm.on_after_batch_transfer(batch, 0)
    variants = dm.schedule.variants(item.numpy(), 2)
    assert bool((variants >= N_VARIANTS).any()) == rotate
    stored = smoke_cache.meta["modalities"]
    for b, (i, v) in enumerate(zip(item.tolist(), variants)):
        cached = np.asarray(smoke_cache.patches[dm.rows["train"][i]], dtype=np.float32)
        for c, name in enumerate(modalities):
            one = torch.from_numpy(cached[stored.index(name)][None])
            assert torch.equal(x[b, c], torchio_variant(one, int(v), 28)[0]), (b, name)


def test_datamodule_paths_agree_and_eval_is_not_augmented(smoke_cache):
    pats = smoke_cache.patients.patient_id.tolist()
    kw = dict(
        modalities=["phase", "flair"],
        train_ids=pats[:2],
        val_ids=pats[2:3],
        test_ids=pats[3:],
        batch_size=8,
        seed=5,
    )
    dms = {m: PatchDataModule(smoke_cache, augment=m, **kw) for m in ("batched", "torchio")}
    for epoch in (0, 3):
        batches = {}
        for mode, dm in dms.items():
            loader = dm.train_dataloader()
            loader.sampler.set_epoch(epoch)
            batches[mode] = dm.on_after_batch_transfer(next(iter(loader)), 0)
        assert torch.equal(batches["batched"][0], batches["torchio"][0]) and batches["batched"][
            0
        ].shape == (8, 2, 28, 28, 28)
    dm = dms["batched"]
    first = [dm.on_after_batch_transfer(b, 0)[0] for b in dm.val_dataloader()]
    again = [dm.on_after_batch_transfer(b, 0)[0] for b in dm.val_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert set(dm.table("val").augmentation) == {"none"} and set(dm.table("test").augmentation) == {
        "none"
    }
    assert set(dm.table("train").patient_id) <= set(pats[:2])
    with pytest.raises(ValueError, match="not in the cache"):
        PatchDataModule(smoke_cache, ["phase"], train_ids=["nobody"])


def test_offline_rotations_off_keeps_each_lesion_once_with_its_elastic_copies(smoke_cache):
    """``offline_rotations=False``: the rim+ rotations (x10) leave the training set, the elastic
    copies of every original patch stay; ``include_offline=False`` keeps the originals only."""
    pats = smoke_cache.patients.patient_id.tolist()
    tables = {
        kw: PatchDataModule(smoke_cache, ["phase"], train_ids=pats, **dict(kw)).table("train")
        for kw in ((), (("offline_rotations", False),), (("include_offline", False),))
    }
    every, no_rot, orig = tables.values()
    assert every.augmentation.str.startswith("rot_").any() and (every.label == 1).any()
    assert not no_rot.augmentation.str.startswith("rot_").any()
    assert set(no_rot.augmentation) == {"none", "elastic1"}
    copies = no_rot.groupby("source_lesion_id").size()
    assert set(copies) == {2}  # each labelled lesion: the original and one elastic copy
    assert set(orig.augmentation) == {"none"} and len(orig) == len(copies)
    assert len(every) > len(no_rot) > len(orig)


def test_no_training_epoch_ends_in_a_batch_of_one_patch(smoke_cache):
    """Batch norm cannot normalise one value: the DenseNet baseline (1³ last maps) trains on a
    set one patch longer than whole batches, each epoch leaving a different patch for later."""
    pats = smoke_cache.patients.patient_id.tolist()
    dm = PatchDataModule(smoke_cache, ["phase", "flair"], train_ids=pats[:3], val_ids=pats[3:4])
    n = len(dm.rows["train"])
    dm = PatchDataModule(
        smoke_cache, ["phase", "flair"], train_ids=pats[:3], val_ids=pats[3:4], batch_size=n - 1
    )
    net = DenseNet3D(2, init_features=4, growth_rate=4, block_config=(1, 1, 1)).train()
    left_out = set()
    for epoch in (0, 1, 2):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        batches = [dm.on_after_batch_transfer(b, 0) for b in loader]
        assert [len(y) for _, y, _ in batches] == [n - 1]
        net(batches[0][0]).sum().backward()
        left_out |= set(range(n)) - set(batches[0][2].tolist())
    assert len(left_out) > 1
    assert sum(len(b[1]) for b in dm.val_dataloader()) == len(dm.rows["val"])  # all evaluated


def test_resume_continues_the_epoch_count(root, tmp_path):
    base = [
        "+experiment=phase",
        "data=smoke",
        "logger=csv",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "test=false",
    ]
    train(compose_train(base + ["trainer.max_epochs=1"], root, tmp_path / "a"))
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["epoch"] == 0
    train(compose_train(base + ["trainer.max_epochs=2", f"ckpt_path={ckpt}"], root, tmp_path / "b"))
    state = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["epoch"] == 1
    log = pd.read_csv(tmp_path / "b" / "csv" / "metrics.csv")
    assert log.epoch.dropna().unique().tolist() == [1]  # only the second epoch was trained


def test_wandb_offline_run_holds_the_metrics(root, tmp_path):
    cfg = compose_train(
        [
            "+experiment=phase",
            "data=smoke",
            "logger=wandb",
            "trainer.max_epochs=1",
            "+trainer.limit_train_batches=2",
            "+trainer.limit_val_batches=1",
        ],
        root,
        tmp_path,
    )
    train(cfg)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    history, summary = read_offline_wandb(next(runs[0].glob("run-*.wandb")))
    assert {"val/loss", "val/auroc", "train/loss", "test/auroc", "lr"} <= set(summary)
    assert any("test/auroc" in row for row in history)
    logged = set().union(*history)  # curves, confusion matrix and the patch grid at test time
    for key in ("test/roc_table", "test/pr_table", "test/confusion_matrix_table"):
        assert f"{key}/_type" in logged
    assert summary["test/confidence_extremes/_type"] == "image-file"
    record = next(runs[0].glob("run-*.wandb")).read_bytes()
    assert b"run_seed" in record and b'"seed"' in record  # the user's seed and the run's own
    assert b"model-phase-fold0" in record and b"tested" in record  # the checkpoint artifact


def test_same_seed_same_metrics(root, tmp_path):
    base = [
        "+experiment=phase_flair",
        "data=smoke",
        "logger=csv",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=3",
        "+trainer.limit_val_batches=2",
    ]
    m1 = train(compose_train(base, root, tmp_path / "a"))
    m2 = train(compose_train(base, root, tmp_path / "b"))
    assert m1 == m2 and "test/auroc" in m1
    assert (tmp_path / "a" / "predictions.csv").read_bytes() == (
        tmp_path / "b" / "predictions.csv"
    ).read_bytes()
    m3 = train(compose_train(base + ["seed=7"], root, tmp_path / "c"))
    assert m3 != m1  # the seed decides


def test_resumed_run_equals_an_uninterrupted_one(root, tmp_path):
    base = [
        "+experiment=phase",
        "data=smoke",
        "logger=csv",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
    ]
    train(compose_train(base + ["trainer.max_epochs=2"], root, tmp_path / "straight"))
    train(
        compose_train(base + ["trainer.max_epochs=1", "test=false"], root, tmp_path / "cut")
    )  # stopped after epoch 0
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    train(
        compose_train(base + ["trainer.max_epochs=2", f"ckpt_path={last}"], root, tmp_path / "cut")
    )
    straight, resumed = (pd.read_csv(tmp_path / d / "predictions.csv") for d in ("straight", "cut"))
    pd.testing.assert_frame_equal(straight, resumed)
    log = pd.read_csv(tmp_path / "cut" / "csv" / "metrics.csv")
    assert log.dropna(subset=["train/loss"]).epoch.tolist() == [
        0,
        1,
    ]  # resume appends to metrics.csv
