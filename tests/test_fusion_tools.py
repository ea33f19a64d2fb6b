"""The helpers of experiments/fusion that other measurements rely on."""

import importlib.util
from pathlib import Path

import numpy as np

from rimnet.data.splits import validate_splits

FUSION = Path(__file__).resolve().parents[1] / "experiments" / "fusion"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, FUSION / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_groupkfold_splits_is_a_valid_splits_file_with_every_patient_tested_once():
    script = _script("groupkfold_splits")
    rng = np.random.default_rng(0)
    patients = [f"p{i:02d}" for i in range(12)]
    per_lesion = np.repeat(patients, rng.integers(5, 40, size=12))
    splits = script.groupkfold_splits(per_lesion)
    validate_splits(splits, patients, "groupkfold")  # raises on any fault
    tested = sorted(p for fold in splits["outer"] for p in fold["test"])
    assert tested == patients
    assert [len(inner) for inner in splits["inner"]] == [3] * 4
    assert all(isinstance(p, str) for fold in splits["outer"] for p in fold["train"])


def test_radial_profile_does_not_change_when_the_patch_is_turned():
    script = _script("radial_probe")
    patches = np.random.default_rng(1).normal(size=(3, 28, 28, 28)).astype(np.float32)
    shells = script.shell_index(28)
    profile = script.radial_profile(patches, shells)
    turned = script.radial_profile(np.rot90(patches, k=1, axes=(1, 2)).copy(), shells)
    assert profile.shape == (3, 2 * (shells.max() + 1))
    np.testing.assert_allclose(profile, turned, rtol=1e-5)
    bright_core = patches.copy()
    bright_core[:, 12:16, 12:16, 12:16] += 5.0
    core = script.radial_profile(bright_core, shells)
    assert (core[:, 0] > profile[:, 0] + 1).all()  # the innermost shell's mean sees it
    np.testing.assert_allclose(core[:, -2:], profile[:, -2:])  # the outermost shell does not


def test_per_patient_zscore_removes_what_a_patient_adds_to_every_lesion():
    script = _script("radial_probe")
    rng = np.random.default_rng(2)
    patient = np.repeat([0, 1, 2], 20)
    feats = rng.normal(size=(60, 4))
    shifted = (
        feats * np.array([1.0, 3.0, 0.5])[patient, None] + np.array([0.0, 5.0, -2.0])[patient, None]
    )
    z = script.per_patient_zscore(shifted, patient)
    np.testing.assert_allclose(z, script.per_patient_zscore(feats, patient), atol=1e-5)
    for p in range(3):
        np.testing.assert_allclose(z[patient == p].mean(0), 0.0, atol=1e-9)
        np.testing.assert_allclose(z[patient == p].std(0), 1.0, atol=1e-5)
