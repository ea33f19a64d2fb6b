"""Nested CV: splits, schedule aggregation, sweeps through the real CLI with three launchers, skips,
and the inter-center ensemble."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rimnet.data.splits import SplitError, fold_statistics, load_or_make_splits, make_splits
from rimnet.models import RimNet
from rimnet.training.protocol import aggregate_schedules, ensemble_external

REPO = Path(__file__).resolve().parents[1]
# The protocol, not the network, is under test here: the smallest RimNet, two steps an epoch.
TINY = [
    "data=smoke",
    "logger=csv",
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "data.loader.batch_size=8",
    "model.net.widths=[2,4,4]",
    "model.net.fc=[8]",
]


def fake_cohort(n_per_site=(40, 32), seed=0):
    rng = np.random.default_rng(seed)
    patients, lesions = [], []
    for site, n in zip(("basel", "lausanne"), n_per_site):
        for i in range(n):
            pid = f"{site[:3]}{i:03d}"
            patients.append({"patient_id": pid, "site": site})
            n_pos, n_neg = rng.negative_binomial(0.6, 0.6 / 4.6), rng.poisson(39) if i % 13 else 0
            for k in range(n_pos + n_neg):
                lid = f"{pid}_L{k:04d}"
                for aug in ["none"] + (["rot_x90", "elastic1"] if k < n_pos else ["elastic1"]):
                    lesions.append(
                        {
                            "patient_id": pid,
                            "lesion_id": lid if aug == "none" else f"{lid}_{aug}",
                            "source_lesion_id": lid,
                            "label": int(k < n_pos),
                            "augmentation": aug,
                            "excluded": "",
                        }
                    )
    return pd.DataFrame(patients), pd.DataFrame(lesions)


def test_splits_are_patient_grouped_complete_and_stratified():
    patients, lesions = fake_cohort()
    s = make_splits(patients, lesions, 4, 3, seed=0)
    tests = [set(f["test"]) for f in s["outer"]]
    assert sum(len(t) for t in tests) == len(patients) and set().union(*tests) == set(
        patients.patient_id
    )  # each patient once
    fold_of = {p: k for k, t in enumerate(tests) for p in t}
    # every lesion and every augmented copy sits in its patient's fold
    assert lesions.groupby("source_lesion_id").patient_id.nunique().max() == 1
    for k, fold in enumerate(s["outer"]):
        assert not set(fold["train"]) & set(fold["test"])
        inner_vals = [set(i["val"]) for i in s["inner"][k]]
        assert set().union(*inner_vals) == set(fold["train"]) and sum(map(len, inner_vals)) == len(
            fold["train"]
        )
        for inner in s["inner"][k]:
            assert not set(inner["train"]) & set(inner["val"])
    stats = fold_statistics(s, patients, lesions)
    for site, g in stats.groupby("site"):
        n_pat = (patients.site == site).sum()
        assert g.patients.max() - g.patients.min() <= max(2, 0.25 * n_pat / 4)
        assert (
            g["rim+"].max() - g["rim+"].min() <= 0.35 * g["rim+"].mean() + 2
        )  # stratified within tolerance
        assert g["rim-"].max() - g["rim-"].min() <= 0.35 * g["rim-"].mean() + 2
    assert all(fold_of[p] == k for k, t in enumerate(tests) for p in t)


def test_splits_file_is_reused_and_hand_edits_are_respected(tmp_path, caplog):
    patients, lesions = fake_cohort((12, 12))
    path = tmp_path / "splits.json"
    with caplog.at_level("INFO", logger="rimnet.data.splits"):
        first = load_or_make_splits(path, patients, lesions)
    assert "rim+" in caplog.text  # fold statistics logged when written
    assert (
        load_or_make_splits(path, patients, lesions, seed=99)["outer"] == first["outer"]
    )  # reused, not remade
    edited = json.loads(path.read_text())
    moved = edited["outer"][0]["test"].pop()
    edited["outer"][1]["test"].append(moved)
    for k in (0, 1):
        edited["outer"][k]["train"] = sorted(
            set(patients.patient_id) - set(edited["outer"][k]["test"])
        )
    for k in (0, 1):  # hand-edited inner folds: three interleaved parts of the new training set
        train = edited["outer"][k]["train"]
        edited["inner"][k] = [
            {"val": train[j::3], "train": sorted(set(train) - set(train[j::3]))} for j in range(3)
        ]
    path.write_text(json.dumps(edited))
    assert moved in load_or_make_splits(path, patients, lesions)["outer"][1]["test"]
    edited["outer"][2]["test"].append("ghost")
    path.write_text(json.dumps(edited))
    with pytest.raises(SplitError, match="unknown patient 'ghost'"):
        load_or_make_splits(path, patients, lesions)
    edited["outer"][2]["test"].remove("ghost")
    edited["outer"][2]["test"].append(moved)
    path.write_text(json.dumps(edited))
    with pytest.raises(
        SplitError, match=f"patient '{moved}' is in the test set of outer folds 1 and 2"
    ):
        load_or_make_splits(path, patients, lesions)


def test_schedule_aggregation():
    assert aggregate_schedules([[5, 3, 3, 3], [7, 4, 3, 3], [6, 3, 4, 3]]) == [6, 3, 3, 3]
    assert aggregate_schedules([[1, 0, 0, 0], [2, 1, 0, 0], [2, 0, 0, 0]]) == [
        2,
        0,
        0,
        0,
    ]  # 1.67 -> 2, 0.33 -> 0
    assert aggregate_schedules([[4, 3, 3, 4], [5, 3, 3, 5]]) == [5, 3, 3, 5]  # halves round up
    assert aggregate_schedules([[0, 0, 0, 0]] * 3) == [1, 0, 0, 0]


def test_ensemble_is_the_mean_of_the_fold_models(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"lau001_L{i:04d}" for i in range(10)]
    probs = rng.random((4, 10))
    for k in range(4):
        order = rng.permutation(10)  # rows in any order
        df = pd.DataFrame(
            {
                "lesion_id": np.array(ids)[order],
                "patient_id": "lau001",
                "site": "lausanne",
                "label": 0,
                "prob": probs[k, order],
                "experiment": "ics",
                "fold": k,
            }
        )
        (tmp_path / f"fold{k}").mkdir()
        df.to_csv(tmp_path / f"fold{k}" / "external_predictions.csv", index=False)
    ens = pd.read_csv(ensemble_external(tmp_path, 4)).set_index("lesion_id").loc[ids]
    np.testing.assert_allclose(ens.prob, probs.mean(0))
    np.testing.assert_allclose(ens.prob_std, probs.std(0))
    assert set(ens.fold) == {"ensemble"}


def _sweep(root: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "RIMNET_ROOT": str(root), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "rimnet.train", "-m", *overrides]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def root(smoke_project) -> Path:
    """The session's smoke project; this module's sweeps are the only ones under its outputs/."""
    return smoke_project


def _check_job(job_dir: Path, cache_lesions: pd.DataFrame | None = None) -> dict:
    job = json.loads((job_dir / "job.json").read_text())
    assert job["status"] == "done" and len(job["inner_schedules"]) == 3
    assert (
        json.loads((job_dir / "schedule.json").read_text())["aggregated"] == job["fixed_schedule"]
    )
    preds = pd.read_csv(job_dir / "predictions.csv")
    assert len(preds) == job["n_test_lesions"] > 0 and preds.lesion_id.is_unique
    assert not preds.lesion_id.str.contains("elastic|rot_").any()  # original patches only
    assert (job_dir / "final" / "checkpoints" / "last.ckpt").exists()
    return job


def test_basic_launcher_sweep_then_rerun_skips(root):
    _sweep(root, "+experiment=phase,flair", "fold=0", *TINY)
    sweep = root / "outputs" / "sweeps" / "smoke"
    jobs = {e: _check_job(sweep / e / "fold0") for e in ("phase", "flair")}
    splits = json.loads((root / "data" / "splits" / "smoke.json").read_text())
    preds = pd.read_csv(sweep / "phase" / "fold0" / "predictions.csv")
    assert set(preds.patient_id) <= set(splits["outer"][0]["test"])
    stamp = (sweep / "phase" / "fold0" / "predictions.csv").stat().st_mtime_ns
    out = _sweep(root, "+experiment=phase,flair", "fold=0", *TINY)
    assert out.stdout.count("skipped") == 2
    summary = pd.read_csv(sweep / "summary.csv")  # printed and written when the sweep ends
    assert summary[["experiment", "fold", "status"]].values.tolist() == [
        ["flair", 0, "done"],
        ["phase", 0, "done"],
    ]
    assert summary.test_auroc.between(0, 1).all() and "sweep summary" in out.stdout
    assert (sweep / "phase" / "fold0" / "predictions.csv").stat().st_mtime_ns == stamp
    assert jobs["phase"]["fingerprint"] != jobs["flair"]["fingerprint"]
    flair = (sweep / "flair" / "fold0" / "predictions.csv").read_bytes()
    out = _sweep(root, "+experiment=flair", "fold=0", "force=true", *TINY)
    assert "skipped" not in out.stdout
    assert (
        sweep / "flair" / "fold0" / "predictions.csv"
    ).read_bytes() == flair  # seeded: the same job, the same result


def test_joblib_launcher_sweep(root):
    _sweep(
        root,
        "+experiment=t2star",
        "fold=1,2",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY,
    )
    for k in (1, 2):
        _check_job(root / "outputs" / "sweeps" / "smoke" / "t2star" / f"fold{k}")


def test_submitit_local_launcher_job(root):
    _sweep(
        root,
        "+experiment=phase_flair",
        "fold=3",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        *TINY,
    )
    _check_job(root / "outputs" / "sweeps" / "smoke" / "phase_flair" / "fold3")


def test_killed_job_resumes_from_its_checkpoints(root):
    job_dir = root / "outputs" / "sweeps" / "smoke" / "phase" / "fold0"
    job = json.loads((job_dir / "job.json").read_text())
    (job_dir / "job.json").write_text(
        json.dumps({**job, "status": "running"})
    )  # as if killed during the final run
    inner_stamp = (job_dir / "inner0" / "schedule.json").stat().st_mtime_ns
    preds = (job_dir / "predictions.csv").read_bytes()
    (job_dir / "final" / "checkpoints" / "last.ckpt").write_bytes(b"cut short by kill -9")
    out = _sweep(root, "+experiment=phase", "fold=0", *TINY)
    assert "skipped" not in out.stdout
    assert (
        job_dir / "inner0" / "schedule.json"
    ).stat().st_mtime_ns == inner_stamp  # finished inner runs are kept
    assert (
        job_dir / "predictions.csv"
    ).read_bytes() == preds  # the damaged checkpoint is set aside, same result
    assert json.loads((job_dir / "job.json").read_text())["status"] == "done"


def test_inter_center_ensemble_end_to_end(root):
    """Also: nested jobs given their schedule run no inner runs, only the final run."""
    out = _sweep(
        root,
        "+experiment=ics_phase_flair",
        "fold=0,1,2",
        "data.outer_folds=3",
        "data.inner_folds=2",
        "schedule.fixed_epochs=[1,1,0,0]",
        *TINY,
    )
    exp = root / "outputs" / "sweeps" / "smoke" / "ics_phase_flair"
    for k in range(3):
        job = json.loads((exp / f"fold{k}" / "job.json").read_text())
        assert job["inner_schedules"] == [] and job["fixed_schedule"] == [1, 1, 0, 0]
        assert not list((exp / f"fold{k}").glob("inner*"))
        metrics = pd.read_csv(next((exp / f"fold{k}" / "final").rglob("metrics.csv")))
        np.testing.assert_allclose(metrics.lr.dropna(), [1e-3, 5e-4])  # an epoch per given rate
    assert "given -> fixed schedule [1, 1, 0, 0]" in out.stdout + out.stderr
    ens = pd.read_csv(exp / "ensemble" / "predictions.csv")
    assert set(ens.site) == {"lausanne"} and set(ens.fold) == {"ensemble"}
    cache_dir = root / "data" / "cache" / "smoke"
    from rimnet.data.cache import load_cache

    cache = load_cache(cache_dir)
    les = cache.lesions.reset_index()
    usable = les[(les.augmentation == "none") & (les.excluded == "") & (les.site == "lausanne")]
    assert sorted(ens.lesion_id) == sorted(usable.lesion_id)  # every Lausanne lesion, once
    # recompute the four fold models' probabilities by hand and average them
    x = torch.from_numpy(
        np.asarray(
            cache.patches[usable.index.to_numpy()][:, [0, 2], 2:30, 2:30, 2:30], dtype=np.float32
        )
    )
    probs = []
    for k in range(3):
        state = torch.load(
            exp / f"fold{k}" / "final" / "checkpoints" / "last.ckpt", weights_only=True
        )["state_dict"]
        net = RimNet(2, widths=(2, 4, 4), fc=(8,))
        net.load_state_dict({key[4:]: v for key, v in state.items() if key.startswith("net.")})
        with torch.no_grad():
            probs.append(net.eval()(x).softmax(1)[:, 1].numpy())
    by_id = ens.set_index("lesion_id").loc[usable.lesion_id]
    np.testing.assert_allclose(by_id.prob, np.mean(probs, axis=0), atol=1e-5)


def test_cv_protocol_packs_every_fold_and_sweeps_skip_its_jobs(root):
    """``protocol=cv engine=packed``: one process trains the 12 inner runs, then the 4 final runs,
    into the folders a sweep over folds uses; the same jobs swept with the sequential engine are
    then skipped (one fingerprint, whichever engine or protocol ran them)."""
    env = {**os.environ, "RIMNET_ROOT": str(root), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "rimnet.train", "+experiment=t2star_flair", "protocol=cv"]
    out = subprocess.run(
        [*cmd, "engine=packed", *TINY],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "packed round: 12 members" in out.stdout and "packed round: 4 members" in out.stdout
    exp = root / "outputs" / "sweeps" / "smoke" / "t2star_flair"
    for k in range(4):
        _check_job(exp / f"fold{k}")
    out = _sweep(root, "experiment=t2star_flair", "fold=0,1,2,3", "engine=sequential", *TINY)
    assert out.stdout.count("skipped") == 4


def test_a_sweep_over_seeds_keeps_each_seed_apart(tmp_path):
    """``seed_folders=true``: jobs go to ``<sweep>/seed<s>/<experiment>/fold<k>``, and the sweep
    summary names each job's seed."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from rimnet.config import CONFIG_DIR, register_resolvers
    from rimnet.training.sweep_summary import sweep_summary

    register_resolvers()
    subdirs = []
    for extra in ([], ["seed=3", "seed_folders=true"]):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", ["experiment=phase", "fold=2", *extra], return_hydra_config=True)
        subdirs.append(cfg.hydra.sweep.subdir)
    assert subdirs == ["phase/fold2", "seed3/phase/fold2"]
    for seed in (1, 3):
        job = tmp_path / f"seed{seed}" / "phase" / "fold2"
        job.mkdir(parents=True)
        pd.DataFrame({"label": [0, 1, 0, 1], "prob": [0.1, 0.9, 0.2, 0.6]}).to_csv(
            job / "predictions.csv", index=False
        )
    table = sweep_summary(tmp_path)
    assert table[["experiment", "seed", "fold", "status"]].values.tolist() == [
        ["phase", "1", 2, "done"],
        ["phase", "3", 2, "done"],
    ]
    assert table.test_auroc.tolist() == [1.0, 1.0]


def test_a_failed_sweep_job_is_named_when_it_fails(caplog):
    """Hydra runs a sweep's other jobs after a failure and raises it only at the end; the sweep
    callback logs the failed job and its traceback at once."""
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from rimnet.training.sweep_summary import SweepSummary

    try:
        raise ValueError("Expected more than 1 value per channel when training")
    except ValueError as exc:
        failed = JobReturn(status=JobStatus.FAILED, _return_value=exc)
    cfg = OmegaConf.create({"experiment_name": "densenet_phase_flair", "fold": 1})
    with caplog.at_level(logging.INFO, logger="rimnet"):
        SweepSummary().on_job_end(cfg, failed)
        SweepSummary().on_job_end(cfg, JobReturn(status=JobStatus.COMPLETED, _return_value=0.9))
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "job densenet_phase_flair fold 1 failed" in caplog.text
    assert "ValueError: Expected more than 1 value" in caplog.text
