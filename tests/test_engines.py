"""The packed engine trains runs together and gives what the sequential engine gives alone:
member-wise Adam, pack rebuilds, smaller last batches, checkpoints and resume.

``RIMNET_TEST_TRAINER=gpu`` runs the engine comparisons on CUDA, in float64 so that they stay
exact (``benchmarks/gpu_check.sh`` does).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers import compose_train
from torch.func import functional_call

from rimnet.io import claim_folder
from rimnet.models import PackedRimNet, RimNet
from rimnet.training.engine import RunSpec, SequentialEngine
from rimnet.training.member_adam import MemberAdam
from rimnet.training.packed_engine import PackedEngine
from rimnet.training.packed_members import PackMembers
from rimnet.training.run import lightning_resumable, prepare_data, resume_checkpoint, stage_config

SMALL = {"n_modalities": 2, "widths": (2, 4, 4), "fc": (8,)}
OVERRIDES = [
    "+experiment=phase_flair",
    "data=smoke",
    "logger=csv",
    "model.net.widths=[2,4,4]",
    "data.loader.include_offline=false",
    "model.net.fc=[8]",
    "trainer.max_epochs=2",
    "~callbacks.progress_bar",
]
if os.environ.get("RIMNET_TEST_TRAINER") == "gpu":
    OVERRIDES += ["trainer=gpu", "trainer.precision=64-true"]


def test_member_adam_equals_one_adam_per_member():
    """Different rates, members sitting out some steps: each member's parameters, moments and
    step count equal its own torch.optim.Adam stepped only when it was active (float64)."""
    torch.manual_seed(0)
    nets = [RimNet(**SMALL).double() for _ in range(3)]
    packed = PackedRimNet.from_models(nets)
    opt = MemberAdam(packed, weight_decay=1e-3)
    alone = [torch.optim.Adam(n.parameters(), lr=1e-3, weight_decay=1e-3) for n in nets]
    lrs = torch.tensor([1e-3, 5e-4, 2e-3], dtype=torch.float64)
    masks = [[1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0]]
    g = torch.Generator().manual_seed(1)
    for mask in masks:
        x = torch.randn(3, 4, 2, 28, 28, 28, generator=g, dtype=torch.float64)
        y = torch.randint(0, 2, (3, 4), generator=g)
        opt.zero_grad()
        logits = packed(x)
        on = torch.tensor(mask, dtype=torch.bool)
        sum(F.cross_entropy(logits[i], y[i]) for i in range(3) if mask[i]).backward()
        opt.step(on, lrs)
        for i, (net, adam) in enumerate(zip(nets, alone)):
            if not mask[i]:
                net.train()(x[i])  # keep the same batch-norm statistics path as the pack's
                continue
            for group in adam.param_groups:
                group["lr"] = float(lrs[i])
            adam.zero_grad()
            F.cross_entropy(net(x[i]), y[i]).backward()
            adam.step()
    names = [n for n, _ in nets[0].named_parameters()]
    group = {k: v for k, v in alone[0].state_dict()["param_groups"][0].items() if k != "lr"}
    for i, (net, adam) in enumerate(zip(nets, alone)):
        got = packed.member_state_dict(i)
        for key, value in net.named_parameters():
            torch.testing.assert_close(got[key], value.detach(), rtol=1e-10, atol=1e-12)
        mine = opt.member_state(i, float(lrs[i]), names, group)
        ref = adam.state_dict()
        assert mine["param_groups"][0] == {**ref["param_groups"][0], "lr": float(lrs[i])}
        for j, entry in ref["state"].items():
            assert (
                float(mine["state"][j]["step"]) == float(entry["step"]) == sum(m[i] for m in masks)
            )
            torch.testing.assert_close(mine["state"][j]["exp_avg"], entry["exp_avg"])
            torch.testing.assert_close(mine["state"][j]["exp_avg_sq"], entry["exp_avg_sq"])


def test_pack_select_and_member_views():
    """A rebuilt pack holds the chosen members; a functional call on a member's views is that
    member, and its gradient lands in the member's slice only."""
    torch.manual_seed(0)
    nets = [RimNet(**SMALL) for _ in range(3)]
    packed = PackedRimNet.from_models(nets)
    two = packed.select([2, 0])
    assert two.k == 2
    for slot, member in ((0, 2), (1, 0)):
        ref = nets[member].state_dict()
        for key, value in two.member_state_dict(slot).items():
            assert torch.equal(value, ref[key]), key
    x = torch.randn(5, 2, 28, 28, 28)
    template = RimNet(**SMALL).eval()
    nets[1].eval()
    out = functional_call(template, packed.member_tensors(1), (x,))
    torch.testing.assert_close(out, nets[1](x))
    out.sum().backward()
    grads = {n: p.grad for n, p in packed.named_parameters()}
    weight = grads["main.block1.convs.0.weight"].unflatten(0, (3, -1))
    assert weight[1].abs().sum() > 0 and weight[0].abs().sum() == 0 == weight[2].abs().sum()


@pytest.fixture(scope="module")
def root(smoke_project, tmp_path_factory) -> tuple[Path, Path]:
    """The session's smoke project and a folder of this module's runs."""
    return smoke_project, tmp_path_factory.mktemp("engines")


def _specs(
    root: tuple[Path, Path], tag: str, overrides: list[str] = ()
) -> tuple[list[RunSpec], object]:
    """Two inner runs (plateau staircase, validation, best weights) and two final runs of
    different fixed schedules (one stops an epoch earlier: the pack is rebuilt without it)."""
    project, runs = root
    cfg = compose_train([*OVERRIDES, *overrides], project, runs / tag)
    cache, splits = prepare_data(cfg)
    out = claim_folder(runs / tag, "training-run")
    specs = []
    for fold in (0, 1):
        ids, test = splits["inner"][fold][0], splits["outer"][fold]["test"]
        run_cfg = stage_config(cfg, "inner", "inner0", out / f"fold{fold}-inner0", fold=fold)
        specs.append(RunSpec(run_cfg, ids["train"], ids["val"], {"predictions": test}))
    for fold, fixed in ((2, [1, 0, 0, 0]), (3, [1, 1, 0, 0])):
        outer = splits["outer"][fold]
        run_cfg = stage_config(
            cfg,
            "final",
            "final",
            out / f"fold{fold}-final",
            fold=fold,
            schedule={"fixed_epochs": fixed},
        )
        specs.append(
            RunSpec(run_cfg, outer["train"], [], {"predictions": outer["test"]}, test_weights=None)
        )
    return specs, cache


@pytest.fixture(scope="module")
def both(root):
    seq_specs, cache = _specs(root, "sequential")
    packed_specs, _ = _specs(root, "packed")
    return (
        SequentialEngine().run(seq_specs, cache),
        PackedEngine().run(packed_specs, cache),
        packed_specs,
    )


def test_packed_engine_equals_sequential_engine(both):
    """Same seeds, full epochs with smaller last batches, different training-set sizes, a member
    leaving the pack: the same schedules, predictions and logged losses.

    fp32 (the grouped and the plain convolution sum in different orders; Adam turns that
    round-off into ~1e-4 of probability after a few steps, more where oneDNN picks other
    kernels: at most 3.3e-3 measured on a Sapphire Rapids, under 2e-3 on a Zen 4):
    probabilities within 5e-3, far below what a wrong member's weights or data would move.
    """
    sequential, packed, specs = both
    for seq, pk, spec in zip(sequential, packed, specs):
        assert pk.staircase.epochs_per_rate == seq.staircase.epochs_per_rate
        a, b = seq.predictions["predictions"], pk.predictions["predictions"]
        assert list(a.lesion_id) == list(b.lesion_id) and len(a) > 0
        assert np.abs(a.prob.to_numpy() - b.prob.to_numpy()).max() < 5e-3
        assert abs(seq.metrics["test/loss"] - pk.metrics["test/loss"]) < 5e-3
        assert seq.metrics["test/acc"] == pytest.approx(pk.metrics["test/acc"], abs=0.02)
        logged = pd.read_csv(Path(spec.cfg.run.dir) / "csv" / "metrics.csv")
        assert sorted(logged.epoch.dropna().astype(int).unique()) == list(
            range(sum(pk.staircase.epochs_per_rate))
        )
    final_ckpts = sorted(p.name for p in (Path(specs[3].cfg.run.dir) / "checkpoints").iterdir())
    assert final_ckpts == ["final.ckpt", "last.ckpt"]
    inner = sorted(p.name for p in (Path(specs[0].cfg.run.dir) / "checkpoints").iterdir())
    assert "last.ckpt" in inner and any(n.startswith("best-epoch") for n in inner)


def test_packed_checkpoint_exports_and_sequential_restarts_it(both, recwarn):
    """Export reads the packed engine's checkpoints; the sequential engine does not resume
    them (no loop state) but starts that run again."""
    from rimnet.inference.bundle import _read_checkpoint

    _, _, specs = both
    last = Path(specs[3].cfg.run.dir) / "checkpoints" / "last.ckpt"
    description, state = _read_checkpoint(last)
    assert description["modalities"] == ["phase", "flair"] and description["stage"] == "final"
    RimNet(**description["model"]).load_state_dict(state)
    assert lightning_resumable(last) is None
    assert any("written by the packed engine" in str(w.message) for w in recwarn)


class KilledError(Exception):
    """Stands for a kill -9 in the middle of a pack's training."""


def test_interrupted_pack_resumes_to_the_same_result(root, both, monkeypatch):
    """KilledError after the first epoch of every member, then resumed from the members'
    ``last.ckpt``: the same predictions as the uninterrupted pack."""
    _, packed, _ = both
    specs, cache = _specs(root, "interrupted")
    original = PackMembers.on_train_epoch_end
    calls = {"n": 0}

    def crash_in_the_second_round(self, trainer, module):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            raise KilledError
        original(self, trainer, module)

    monkeypatch.setattr(PackMembers, "on_train_epoch_end", crash_in_the_second_round)
    with pytest.raises(KilledError):
        PackedEngine().run(specs, cache)
    monkeypatch.setattr(PackMembers, "on_train_epoch_end", original)
    for spec in specs:
        spec.resume = resume_checkpoint(spec.cfg.run.dir)
        assert spec.resume is not None
    resumed = PackedEngine().run(specs, cache)
    for a, b in zip(packed, resumed):
        assert a.staircase.epochs_per_rate == b.staircase.epochs_per_rate
        np.testing.assert_allclose(
            a.predictions["predictions"].prob, b.predictions["predictions"].prob, atol=1e-6
        )
