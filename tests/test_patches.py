"""Patch extraction, normalisation, exact rotations and elastic deformation."""

import numpy as np

from rimnet.data.contract import center_crop, crop_centered, normalise
from rimnet.data.patches import ROTATIONS, ElasticDeformer, rotate


def test_crop_zero_pads_at_the_border():
    vol = np.ones((10, 10, 10), np.float32)
    patch = crop_centered(vol, np.array([0.0, 0.0, 9.0]), 8)
    assert patch.shape == (8, 8, 8)
    # covers [-4, 4) along i and j, [5, 13) along k: the in-volume part is ones, the rest zeros
    assert patch[4:, 4:, :5].all() and patch[:4].sum() == 0 and patch[:, :, 5:].sum() == 0


def test_crop_is_centred_on_the_rounded_centre():
    vol = np.zeros((40, 40, 40), np.float32)
    vol[20, 21, 22] = 1
    patch = crop_centered(vol, np.array([20.2, 20.6, 22.4]), 32)
    assert np.argwhere(patch).tolist() == [[16, 16, 16]]


def test_normalise_maps_each_channel_onto_minus_one_one():
    rng = np.random.default_rng(0)
    p = np.stack(
        [rng.normal(5, 3, (8, 8, 8)), rng.uniform(-100, 0, (8, 8, 8)), np.full((8, 8, 8), 3.0)]
    ).astype(np.float32)
    n = normalise(p)
    for c in range(2):
        assert n[c].min() == -1.0 and n[c].max() == 1.0
    assert (n[2] == 0).all()
    # linear: the order of voxels is kept
    assert np.array_equal(np.argsort(n[0], axis=None), np.argsort(p[0], axis=None))


def test_rotations_are_exact_and_about_the_centre():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(2, 32, 32, 32)).astype(np.float32)
    assert len(ROTATIONS) == 9
    for _, plane, _k in ROTATIONS:
        assert np.array_equal(rotate(rotate(p, plane, 2), plane, 2), p)
        assert np.array_equal(
            rotate(rotate(rotate(rotate(p, plane, 1), plane, 1), plane, 1), plane, 1), p
        )
    # 90° about x (plane y-z): (i, j, k) -> (i, k', j') with values moved, nothing interpolated
    r = rotate(p, (1, 2), 1)
    assert np.array_equal(r[:, :, :, :], np.rot90(p, 1, axes=(2, 3)))
    assert np.array_equal(np.sort(r, axis=None), np.sort(p, axis=None))
    # the central 28³ crop of the rotated cube is the rotated central crop
    assert np.array_equal(center_crop(r, 28), rotate(center_crop(p, 28), (1, 2), 1))


def test_elastic_deformation_is_seeded_and_moderate():
    rng = np.random.default_rng(0)
    big = rng.normal(size=(2, 44, 44, 44)).astype(np.float32)
    a = ElasticDeformer(seed=1)(big, 32)
    b = ElasticDeformer(seed=1)(big, 32)
    assert a.shape == (2, 32, 32, 32) and np.array_equal(a, b)
    assert not np.allclose(a, center_crop(big, 32))
    # smooth blob stays roughly in place: its centre of mass moves by a few voxels at most
    x = np.zeros((1, 44, 44, 44), np.float32)
    x[0, 18:26, 18:26, 18:26] = 1
    d = ElasticDeformer(seed=2)(x, 32)[0]
    com = np.array(np.nonzero(d > 0.5)).mean(1)
    assert np.abs(com - 15.5).max() < 3
