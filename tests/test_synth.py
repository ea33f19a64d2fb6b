"""The synthetic cohort: contract, determinism, site and class statistics, and the phase physics."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage
from sklearn.metrics import cohen_kappa_score

from rimnet.data.candidates import extract_candidates
from rimnet.data.cohort import load_patient, read_cohort
from rimnet.synth import anatomy
from rimnet.synth.phantom import (
    SITES,
    LesionTruth,
    draw_rim,
    draw_rim_count,
    make_patient,
    simulate_raters,
)


def test_smoke_cohort_follows_the_data_contract(smoke_csv):
    df = pd.read_csv(smoke_csv)
    assert df.site.value_counts().to_dict() == {"basel": 3, "lausanne": 3}
    for _, row in df.iterrows():
        img = nib.load(smoke_csv.parent / row.phase)
        voxel = SITES[row.site].voxel_mm
        assert np.allclose(img.header.get_zooms(), voxel)
        assert row.scanner in SITES[row.site].scanners
        labels = np.asarray(nib.load(smoke_csv.parent / row.anatomy).dataobj)
        assert set(np.unique(labels)) == set(range(8))  # every anatomy class occurs
    assert (smoke_csv.parent / "truth.csv").exists()


def test_smoke_class_ratio_and_exclusions(smoke_cache):
    o = smoke_cache.lesions.query("augmentation == 'none' and excluded == ''")
    ratio = (o.label == 0).sum() / (o.label == 1).sum()
    assert 4 < ratio < 25  # smoke forces ≥ 3 true rim+ per patient; the paper scale is ~10.5
    assert set(o.location) <= {"periventricular", "juxtacortical", "deep_wm", "other"}
    assert (smoke_cache.lesions.excluded == "below_min_volume").any()


def test_generation_is_deterministic():
    a = make_patient(SITES["lausanne"], (40, 44, 36), 0.3, np.random.default_rng([3, 1]))
    b = make_patient(SITES["lausanne"], (40, 44, 36), 0.3, np.random.default_rng([3, 1]))
    for k in a.images:
        assert np.array_equal(a.images[k], b.images[k])
    for k in a.masks:
        assert np.array_equal(a.masks[k], b.masks[k])


def test_rim_shell_phase_is_paramagnetic(smoke_csv):
    """Mean filtered phase on the shell around each lesion edge: rim+ clearly above rim-."""
    cohort = read_cohort(smoke_csv)
    pos, neg = [], []
    for _, row in cohort.iterrows():
        vol = load_patient(row)
        table, labels = extract_candidates(
            vol.masks["lesion_mask"], vol.affine, rim_mask=vol.masks["rim_mask"]
        )
        for cand in table.query("excluded == ''").itertuples():
            comp = labels == cand.lesion_index
            shell = ndimage.binary_dilation(comp, iterations=1) & ~ndimage.binary_erosion(
                comp, iterations=1
            )
            (pos if cand.label == 1 else neg).append(vol.images["phase"][shell].mean())
    assert len(pos) >= 4 and len(neg) >= 20
    assert np.mean(pos) > 0.15 and np.mean(pos) - np.mean(neg) > 0.1
    assert np.median(pos) > np.percentile(neg, 75)


def test_rater_agreement_like_the_paper():
    rng = np.random.default_rng(0)
    lesions = []
    for i in range(8000):
        les = LesionTruth(i, bool(rng.random() < 1 / 11.5), 100.0, (0.0, 0.0, 0.0))
        if les.rim:
            les.rim_strength_ppm, les.rim_coverage = draw_rim(rng)
        else:
            les.vein_artefact = bool(rng.random() < 0.25)
        lesions.append(les)
    (r1, r2), consensus = simulate_raters(lesions, rng)
    a = np.array([les.index in r1 for les in lesions])
    b = np.array([les.index in r2 for les in lesions])
    c = np.array([les.index in consensus for les in lesions])
    assert cohen_kappa_score(a, b) == pytest.approx(0.73, abs=0.05)
    assert (a != b)[c].mean() == pytest.approx(0.37, abs=0.06)  # rim+ needing consensus
    assert a[c].mean() == pytest.approx(0.78, abs=0.06)  # expert sensitivity (Table 3)


@pytest.mark.parametrize("site, share", [("basel", 0.354), ("lausanne", 0.222)])
def test_rim_burden_per_patient(site, share):
    """Share of patients with ≥ 4 consensus rim+ lesions (Fig. 3 / §3.2)."""
    rng = np.random.default_rng(1)
    hits = 0
    n = 3000
    for _ in range(n):
        lesions = []
        for i in range(draw_rim_count(SITES[site], rng)):
            les = LesionTruth(i, True, 100.0, (0.0, 0.0, 0.0))
            les.rim_strength_ppm, les.rim_coverage = draw_rim(rng)
            lesions.append(les)
        hits += len(simulate_raters(lesions, rng)[1]) >= 4
    assert hits / n == pytest.approx(share, abs=0.05)


def test_anatomy_codes():
    a = anatomy.make_anatomy((64, 72, 52), 0.67, np.random.default_rng(0))
    assert a.labels.shape == (96, 107, 78)
    assert not (a.labels[a.air] > 0).any()
