"""Candidate rules on hand-built volumes: connectivity, size rule, exclusions, labels, location."""

import numpy as np
import pytest

from rimnet.data.candidates import CandidateRules, extract_candidates
from rimnet.synth import anatomy


def aff(v: float) -> np.ndarray:
    return np.diag([v, v, v, 1.0])


def test_six_connectivity_splits_diagonal_neighbours():
    m = np.zeros((20, 20, 20), np.uint8)
    m[2:6, 2:6, 2:6] = 1
    m[6:10, 6:10, 6:10] = 1  # touches the first cube only at a corner
    m[12:14, 12:14, 12:14] = 1
    m[14:16, 12:14, 12:14] = 1  # face-adjacent: same component
    df, labels = extract_candidates(m, aff(1.0), CandidateRules.paper(min_volume_mm3=0))
    assert len(df) == 3  # 26-connectivity would give 2
    assert sorted(df.n_voxels) == [16, 64, 64]
    assert labels.max() == 3


@pytest.mark.parametrize("voxel, expected", [(0.65, "below_min_volume"), (0.67, "")])
def test_size_rule_is_a_volume(voxel, expected):
    m = np.zeros((20, 20, 20), np.uint8)
    m[5:11, 5:12, 5:6] = 1  # 42 voxels: 11.5 mm³ at 0.65 mm, 12.6 mm³ at 0.67 mm
    df, _ = extract_candidates(m, aff(voxel))
    assert df.n_voxels.item() == 42
    assert df.volume_mm3.item() == pytest.approx(42 * voxel**3)
    assert df.excluded.item() == expected


def test_too_large_and_air_and_rim_plus_in_patch():
    m = np.zeros((80, 80, 80), np.uint8)
    m[0:22, 0:22, 0:22] = 1  # 10,648 voxels > 10,000
    m[50:55, 50:55, 5:10] = 1  # near air
    m[40:50, 10:20, 40:50] = 1  # rim+ of 1,000 voxels
    m[52:56, 12:16, 42:46] = 1  # rim- two voxels away: its 28³ patch holds the rim+ lesion
    m[60:64, 60:64, 60:64] = 1  # an ordinary rim- lesion
    rim = np.zeros_like(m, dtype=np.int16)
    rim[40:50, 10:20, 40:50] = 1
    air = np.zeros_like(m)
    air[52:60, 52:60, 0:8] = 1
    df, _ = extract_candidates(m, aff(1.0), rim_mask=rim, air_mask=air)
    reasons = dict(zip(df.n_voxels, df.excluded))
    assert reasons[10648] == "too_large"
    assert reasons[125] == "air_artefact"
    assert reasons[1000] == ""  # rim+ itself is kept
    assert df.loc[df.n_voxels == 64, "excluded"].tolist() == ["rim_plus_in_patch", ""]
    assert df.loc[df.n_voxels == 1000, "label"].item() == 1


def test_labels_raters_and_consensus_needed():
    m = np.zeros((30, 30, 30), np.uint8)
    m[2:6, 2:6, 2:6] = 1
    m[20:24, 20:24, 20:24] = 1
    rim = np.zeros_like(m, dtype=np.int16)
    rim[3:5, 3:5, 3:5] = 7  # instance label 7 overlaps the first candidate
    r1 = rim.copy()
    r2 = np.zeros_like(rim)
    df, _ = extract_candidates(
        m,
        aff(1.0),
        CandidateRules.paper(min_volume_mm3=0),
        rim_mask=rim,
        rater1_mask=r1,
        rater2_mask=r2,
    )
    assert df.label.tolist() == [1, 0]
    assert df.rater1.tolist() == [1, 0] and df.rater2.tolist() == [0, 0]
    assert df.consensus_needed.tolist() == [True, False]
    df2, _ = extract_candidates(m, aff(1.0), CandidateRules.paper(min_volume_mm3=0))
    assert df2.label.tolist() == [-1, -1] and not df2.consensus_needed.any()


def test_location_rules():
    shape = (60, 60, 60)
    anat = np.full(shape, anatomy.WM, np.uint8)
    anat[28:32, 0:60, 28:32] = anatomy.VENTRICLE
    anat[:, :, 55:] = anatomy.CORTEX
    anat[0:10, 0:10, 0:10] = anatomy.DEEP_GM
    m = np.zeros(shape, np.uint8)
    m[28:32, 10:14, 33:36] = 1  # 1 voxel gap to the ventricle: inside the 3 mm dilation
    m[10:14, 40:44, 51:55] = 1  # half of it within 2 mm of the cortex
    m[2:6, 2:6, 2:6] = 1  # deep grey matter
    m[45:49, 40:44, 15:19] = 1  # deep white matter
    df, _ = extract_candidates(m, aff(1.0), CandidateRules.paper(min_volume_mm3=0), anatomy=anat)
    assert df.location.tolist() == ["other", "juxtacortical", "periventricular", "deep_wm"]


def test_centre_of_mass_in_voxels_and_mm():
    m = np.zeros((20, 20, 20), np.uint8)
    m[4:8, 10:12, 0:2] = 1
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    affine[:3, 3] = [10, 20, 30]
    df, _ = extract_candidates(m, affine, CandidateRules.paper(min_volume_mm3=0))
    assert df[["center_i", "center_j", "center_k"]].values.tolist() == [[5.5, 10.5, 0.5]]
    assert df[["center_x", "center_y", "center_z"]].values.tolist() == [[12.75, 25.25, 30.25]]
