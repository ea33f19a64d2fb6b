"""One synthetic MS patient: lesions, rims, veins, the three contrasts, masks and two raters.

The generator draws a ground truth (each lesion rim+ or rim- by its pathology), renders it through
MR physics (:mod:`rimnet.synth.physics`), and then simulates the annotation process of §2.3: an
automated segmentation with boundary errors, false positives and confluent lesions; two experts who
each report the rims they can see (subtle rims are missed, rim-like vein artefacts are sometimes
reported); a consensus that resolves their disagreements.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from rimnet.prepare.phase import gaussian_highpass as highpass
from rimnet.prepare.phase import process_phase
from rimnet.synth import anatomy
from rimnet.synth.physics import (
    B0_T,
    GAMMA_BAR_HZ_PER_T,
    RAD_PER_PPM,
    TE_S,
    forward_field,
    smooth_noise,
)


@dataclass(frozen=True)
class SiteProfile:
    """Acquisition characteristics of one centre (noise and contrast differ between sites)."""

    name: str
    voxel_mm: float
    scanners: tuple[str, ...]
    phase_noise_rad: float
    t2star_snr: float
    flair_snr: float
    t2star_gain: float
    flair_gain: float
    rim_pos_mean: float  # mean true rim+ lesions per patient (negative binomial)
    rim_pos_dispersion: float


SITES: dict[str, SiteProfile] = {
    "basel": SiteProfile("basel", 0.67, ("prisma",), 0.10, 22.0, 25.0, 1.0, 1.0, 5.0, 0.42),
    "lausanne": SiteProfile(
        "lausanne", 0.65, ("skyra", "prisma"), 0.13, 18.0, 22.0, 0.9, 1.12, 2.9, 0.35
    ),
}


@dataclass
class LesionTruth:
    """What the generator knows about one lesion (written to the cohort's ``truth.csv``)."""

    index: int
    rim: bool
    volume_mm3: float
    centre_mm: tuple[float, float, float]
    rim_strength_ppm: float = 0.0
    rim_coverage: float = 0.0
    vein_artefact: bool = False
    region: str = "deep_wm"


@dataclass
class Patient:
    """All volumes of one patient on the 3D-EPI grid plus the generator's truth table."""

    images: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    voxel_mm: float
    scanner: str
    lesions: list[LesionTruth] = field(default_factory=list)
    raw_phase: np.ndarray | None = None  # wrapped, unfiltered scanner phase (BIDS output)


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def _box(centre_vox: np.ndarray, half: int, shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    lo = np.floor(centre_vox).astype(int) - half
    hi = lo + 2 * half + 1
    lo_c, hi_c = np.maximum(lo, 0), np.minimum(hi, shape)
    if np.any(hi_c <= lo_c):
        return None
    return tuple(slice(a, b) for a, b in zip(lo_c, hi_c))


def _segment_distance(c: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Distance (mm) of every coordinate in ``c`` (3, ...) to the segment p0-p1."""
    d = p1 - p0
    rel = c - p0.reshape(3, *([1] * (c.ndim - 1)))
    t = np.clip(np.tensordot(d, rel, axes=(0, 0)) / float(d @ d), 0.0, 1.0)
    closest = p0.reshape(3, *([1] * (c.ndim - 1))) + d.reshape(3, *([1] * (c.ndim - 1))) * t
    return np.sqrt(((c - closest) ** 2).sum(0))


def draw_rim_count(
    site: SiteProfile, rng: np.random.Generator, lesion_scale: float = 1.0, min_rim: int = 0
) -> int:
    """True rim+ lesions of one patient: negative binomial with the site's mean and dispersion."""
    r = site.rim_pos_dispersion
    n = int(rng.negative_binomial(r, r / (r + site.rim_pos_mean)))
    return max(int(round(n * lesion_scale)), min_rim)


def draw_rim(rng: np.random.Generator) -> tuple[float, float]:
    """Rim susceptibility (ppm) and angular coverage (1 = complete rim, else a partial rim)."""
    strength = float(rng.lognormal(np.log(0.075), 0.5))
    coverage = 1.0 if rng.random() < 0.6 else float(rng.uniform(0.45, 0.85))
    return strength, coverage


def _draw_volume(rng: np.random.Generator, rim: bool) -> float:
    # Log-normal fits of §2.3: rim+ 325 ± 410 mm³, rim- 103 ± 232 mm³ (above 12.3 mm³).
    if rim:
        return float(np.clip(rng.lognormal(np.log(250.0), 0.95), 25.0, 2600.0))
    if rng.random() < 0.006:  # rare very large (confluent) lesions: the > 10,000-voxel rule
        return float(rng.uniform(3400.0, 4800.0))
    return float(np.clip(rng.lognormal(np.log(58.0), 0.95), 13.0, 1500.0))


REGION_WEIGHTS = {
    True: {"periventricular": 0.58, "juxtacortical": 0.17, "deep_wm": 0.25},
    False: {"periventricular": 0.26, "juxtacortical": 0.21, "deep_wm": 0.47, "other": 0.06},
}


def _region_maps(anat: anatomy.Anatomy) -> dict[str, np.ndarray]:
    """Where lesion centres of each location class may be drawn."""
    v = anat.voxel_mm
    lab = anat.labels
    wm = lab == anatomy.WM
    d_vent = ndimage.distance_transform_edt(lab != anatomy.VENTRICLE, sampling=v)
    d_ctx = ndimage.distance_transform_edt(lab != anatomy.CORTEX, sampling=v)
    interior = ndimage.distance_transform_edt(lab >= anatomy.CORTEX, sampling=v) > 5.0
    return {
        "periventricular": wm & (d_vent > 1.0) & (d_vent < 4.0),
        "juxtacortical": wm & (d_ctx > 0.5) & (d_ctx < 2.5),
        "deep_wm": wm & (d_vent > 6.0) & (d_ctx > 5.0),
        "other": np.isin(lab, (anatomy.DEEP_GM, anatomy.BRAINSTEM, anatomy.CEREBELLUM)) & interior,
    }


def _lesion_mask(
    anat: anatomy.Anatomy,
    centre_mm: np.ndarray,
    volume_mm3: float,
    rng: np.random.Generator,
    wobble: np.ndarray,
) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray] | None:
    """Rasterise an irregular ellipsoid; returns (box, mask in box, normalised radius in box)."""
    v = anat.voxel_mm
    r_eq = (3 * volume_mm3 / (4 * np.pi)) ** (1 / 3)
    aspect = rng.uniform(0.7, 1.4, 3)
    aspect /= np.prod(aspect) ** (1 / 3)
    radii = r_eq * aspect
    centre_vox = (centre_mm + (np.array(anat.labels.shape) - 1) / 2 * v) / v
    box = _box(centre_vox, int(np.ceil(radii.max() * 1.35 / v)) + 2, anat.labels.shape)
    if box is None:
        return None
    c = anat.coords[(slice(None),) + box] - centre_mm.reshape(3, 1, 1, 1)
    local = np.tensordot(_rotation(rng).T, c, axes=(1, 0)) / radii.reshape(3, 1, 1, 1)
    rad = np.sqrt((local**2).sum(0)) + 0.12 * wobble[box]
    mask = rad < 1.0
    if mask.sum() < 4:
        return None
    return box, mask, rad


@dataclass
class _LesionMaps:
    """What placing the lesions paints: true instances, susceptibility, relative T2* and FLAIR
    changes, occupied voxels, and the veins to draw (segment ends in mm and radius)."""

    lesion_id: np.ndarray
    chi: np.ndarray
    t2s_mod: np.ndarray
    flair_mod: np.ndarray
    occupied: np.ndarray
    veins: list[tuple[np.ndarray, np.ndarray, float]]

    @classmethod
    def empty(cls, shape: tuple[int, ...]) -> _LesionMaps:
        zeros = np.zeros(shape, np.float32)
        return cls(
            np.zeros(shape, np.int16),
            zeros.copy(),
            zeros.copy(),
            zeros.copy(),
            np.zeros(shape, bool),
            [],
        )


def make_patient(
    site: SiteProfile,
    fov_mm: tuple[float, float, float],
    lesion_scale: float,
    rng: np.random.Generator,
    min_rim: int = 0,
) -> Patient:
    """Generate one patient of ``site``; ``lesion_scale`` scales the lesion counts (1.0 = paper).

    Steps: anatomy → lesions (rim+ with paramagnetic shells, rim- with look-alike veins) → veins →
    susceptibility and field → T2* magnitude and FLAIR → the annotation process → the scanner's
    wrapped phase → the site's phase post-processing (unwrapping + homodyne high-pass, exactly as
    ``rimnet prepare`` does it with ``phase_filter=gaussian``).
    """
    v = site.voxel_mm
    anat = anatomy.make_anatomy(fov_mm, v, rng)
    regions = _region_maps(anat)
    wobble = smooth_noise(anat.labels.shape, 2.0 / v, rng)
    maps, lesions = _place_lesions(site, anat, regions, wobble, lesion_scale, rng, min_rim)
    vein_mask = _vein_mask(anat, maps.veins, rng)
    lesion_chi = maps.chi.copy()  # the lesions' own sources, before tissue, veins and air
    chi, field_ppm, unfiltered = _field(site, anat, maps.chi, vein_mask, rng)
    t2s, flair = _magnitude_images(site, anat, maps, lesion_chi, vein_mask, field_ppm, rng)
    masks = _annotations(anat, maps.lesion_id, lesions, chi, rng)
    scanner = site.scanners[int(rng.integers(len(site.scanners)))]
    raw = _raw_phase(site, anat, unfiltered, t2s, rng)
    phase, _ = process_phase(raw, t2s, np.full(3, v), "raw", "gaussian", sigma_mm=PHASE_SIGMA_MM)
    images = {"phase": phase, "t2star": t2s, "flair": flair}
    return Patient(images, masks, v, scanner, lesions, raw)


def _place_lesions(
    site: SiteProfile,
    anat: anatomy.Anatomy,
    regions: dict[str, np.ndarray],
    wobble: np.ndarray,
    lesion_scale: float,
    rng: np.random.Generator,
    min_rim: int,
) -> tuple[_LesionMaps, list[LesionTruth]]:
    """The ground-truth lesion list, painted into :class:`_LesionMaps`."""
    n_rim = draw_rim_count(site, rng, lesion_scale, min_rim)
    n_neg = int(
        rng.poisson(48.0 * lesion_scale)
    )  # ~39 kept after the size rule, merging and exclusions
    kinds = [True] * n_rim + [False] * n_neg
    order = rng.permutation(len(kinds))  # interleave so large rim+ lesions do not always come first
    maps = _LesionMaps.empty(anat.labels.shape)
    lesions: list[LesionTruth] = []
    for idx in order:
        rim = kinds[idx]
        names = list(REGION_WEIGHTS[rim])
        region = names[rng.choice(len(names), p=np.array(list(REGION_WEIGHTS[rim].values())))]
        candidates = np.flatnonzero(regions[region])
        if candidates.size == 0:
            continue
        vol = _draw_volume(rng, rim)
        placed = _find_place(anat, maps, lesions, candidates, vol, rim, wobble, rng)
        if placed is None:
            continue
        centre, box, mask, rad = placed
        k = len(lesions) + 1
        sub = maps.lesion_id[box]
        sub[mask & (sub == 0)] = k
        maps.occupied[box] |= mask
        truth = LesionTruth(
            k,
            rim,
            float(mask.sum() * site.voxel_mm**3),
            tuple(float(x) for x in centre),
            region=region,
        )
        _paint_lesion(anat, maps, truth, centre, box, mask, rad, vol, rng)
        lesions.append(truth)
    return maps, lesions


def _find_place(
    anat: anatomy.Anatomy,
    maps: _LesionMaps,
    lesions: list[LesionTruth],
    candidates: np.ndarray,
    vol: float,
    rim: bool,
    wobble: np.ndarray,
    rng: np.random.Generator,
) -> tuple | None:
    """(centre, box, mask, normalised radius) of a new lesion in tissue, or None after 12 tries.
    A few rim- lesions are drawn confluent with an earlier rim- lesion."""
    confluent = (not rim) and lesions and rng.random() < 0.05
    for _attempt in range(12):
        if confluent:
            other = lesions[rng.integers(len(lesions))]
            if other.rim:
                continue
            r_other = (3 * other.volume_mm3 / (4 * np.pi)) ** (1 / 3)
            direction = rng.standard_normal(3)
            centre = (
                np.array(other.centre_mm) + direction / np.linalg.norm(direction) * r_other * 1.1
            )
        else:
            centre = anat.coords.reshape(3, -1)[:, rng.choice(candidates)] + rng.uniform(
                -0.3, 0.3, 3
            )
        drawn = _lesion_mask(anat, centre, vol, rng, wobble)
        if drawn is None:
            continue
        box, mask, rad = drawn
        inside = anat.labels[box][mask]
        if np.mean((inside >= anatomy.CORTEX) & (inside != anatomy.VENTRICLE)) < 0.9:
            continue
        guard = ndimage.binary_dilation(mask, iterations=2 if rim else 1)
        if not confluent and maps.occupied[box][guard].any():
            continue
        if confluent and (maps.lesion_id[box][mask] > 0).mean() > 0.5:
            continue
        return centre, box, mask, rad
    return None


def _paint_lesion(
    anat: anatomy.Anatomy,
    maps: _LesionMaps,
    truth: LesionTruth,
    centre: np.ndarray,
    box: tuple,
    mask: np.ndarray,
    rad: np.ndarray,
    vol: float,
    rng: np.random.Generator,
) -> None:
    """Lesion tissue (demyelination: less diamagnetic myelin, longer T2*, FLAIR hyperintensity),
    then a paramagnetic rim (rim+) or an iron-laden core or a vein along the edge (rim-), and
    sometimes a central vein."""
    core = mask.astype(np.float32)
    maps.chi[box] += 0.012 * core * rng.uniform(0.3, 1.0)
    maps.t2s_mod[box] += core * rng.uniform(0.15, 0.35)
    maps.flair_mod[box] = np.maximum(
        maps.flair_mod[box], core * rng.uniform(0.55, 0.95) * (1.1 if truth.rim else 1.0)
    )
    if truth.rim:
        strength, coverage = draw_rim(rng)
        shell = (rad > 0.7) & (rad < 1.12)
        if coverage < 1.0:
            c = anat.coords[(slice(None),) + box] - centre.reshape(3, 1, 1, 1)
            u = rng.standard_normal(3)
            u /= np.linalg.norm(u)
            cosang = np.tensordot(u, c, axes=(0, 0)) / (np.sqrt((c**2).sum(0)) + 1e-6)
            shell &= cosang > 1 - 2 * coverage
        maps.chi[box] += strength * shell  # darkens T2* through R2* (r2star_decay)
        truth.rim_strength_ppm, truth.rim_coverage = strength, coverage
    else:
        if rng.random() < 0.10:  # diffusely paramagnetic rim- lesion (iron without a rim)
            maps.chi[box] += core * rng.uniform(0.02, 0.05)
        if rng.random() < 0.25:  # rim-like artefact: a vein running along the lesion edge
            r_eq = (3 * vol / (4 * np.pi)) ** (1 / 3)
            n = rng.standard_normal(3)
            n /= np.linalg.norm(n)
            t = np.cross(n, rng.standard_normal(3))
            t /= np.linalg.norm(t)
            p = centre + n * (r_eq + 0.6)
            maps.veins.append((p - t * 2.5 * r_eq, p + t * 2.5 * r_eq, rng.uniform(0.35, 0.6)))
            truth.vein_artefact = True
    if rng.random() < 0.4:  # central vein sign, common to both classes
        axis = rng.standard_normal(3)
        axis /= np.linalg.norm(axis)
        maps.veins.append((centre - axis * 6.0, centre + axis * 6.0, rng.uniform(0.25, 0.4)))


def _vein_mask(anat: anatomy.Anatomy, veins: list, rng: np.random.Generator) -> np.ndarray:
    """The lesions' veins plus medullary veins crossing the white matter, rasterised in the
    brain."""
    v, shape = anat.voxel_mm, anat.labels.shape
    wm_pts = np.flatnonzero(anat.labels == anatomy.WM)
    for _ in range(int(rng.integers(8, 14))):
        p0 = anat.coords.reshape(3, -1)[:, rng.choice(wm_pts)]
        d = rng.standard_normal(3)
        veins.append((p0, p0 + d / np.linalg.norm(d) * rng.uniform(10, 25), rng.uniform(0.3, 0.6)))
    vein_mask = np.zeros(shape, bool)
    for p0, p1, radius in veins:
        centre_vox = ((p0 + p1) / 2 + (np.array(shape) - 1) / 2 * v) / v
        box = _box(centre_vox, int(np.linalg.norm(p1 - p0) / 2 / v + radius / v) + 2, shape)
        if box is not None:
            vein_mask[box] |= _segment_distance(anat.coords[(slice(None),) + box], p0, p1) < radius
    return vein_mask & anat.brain


VEIN_CHI = 0.35  # ppm, deoxygenated venous blood relative to tissue
R2S_PER_PPM = 300.0  # s⁻¹ of extra R2* per ppm of lesion iron (r2star_decay)
VEIN_R2S = 60.0  # s⁻¹ of extra R2* in veins
HZ_PER_PPM = GAMMA_BAR_HZ_PER_T * B0_T * 1e-6  # 127.7 Hz per ppm at 3 T
PHASE_SIGMA_MM = 4.0  # the phantom sites' homodyne filter (Gaussian low-pass in image space)
TISSUE_CHI = {
    anatomy.CORTEX: 0.02,
    anatomy.WM: -0.03,
    anatomy.VENTRICLE: 0.0,
    anatomy.DEEP_GM: 0.07,
    anatomy.BRAINSTEM: -0.02,
    anatomy.CEREBELLUM: 0.01,
}
BASE_T2S = {
    anatomy.CSF: 1.0,
    anatomy.CORTEX: 0.72,
    anatomy.WM: 0.58,
    anatomy.VENTRICLE: 1.0,
    anatomy.DEEP_GM: 0.48,
    anatomy.BRAINSTEM: 0.55,
    anatomy.CEREBELLUM: 0.66,
}
BASE_FLAIR = {
    anatomy.CSF: 0.08,
    anatomy.CORTEX: 0.62,
    anatomy.WM: 0.48,
    anatomy.VENTRICLE: 0.06,
    anatomy.DEEP_GM: 0.55,
    anatomy.BRAINSTEM: 0.5,
    anatomy.CEREBELLUM: 0.6,
}


def _field(
    site: SiteProfile,
    anat: anatomy.Anatomy,
    chi: np.ndarray,
    vein_mask: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Susceptibility (ppm) → field (dipole model, ppm) → the unwrapped phase at TE (radians),
    with a broad shim residue and, in the brain, the acquisition's phase noise."""
    v, shape, lab, brain = anat.voxel_mm, anat.labels.shape, anat.labels, anat.brain
    for code, val in TISSUE_CHI.items():
        chi[lab == code] += val
    chi[vein_mask] += VEIN_CHI
    chi[anat.air] += 9.2  # air relative to tissue
    field_ppm = forward_field(chi, v, local_term=0.3)
    residue = 0.004 * smooth_noise(shape, 25.0 / v, rng)  # imperfect shim
    noise = rng.normal(0, site.phase_noise_rad, shape).astype(np.float32) * brain
    rng.normal(0, 1.5, shape)  # a draw of cohort version 3, kept so later draws stay the same
    return chi, field_ppm, (field_ppm + residue) * RAD_PER_PPM + noise


def _raw_phase(
    site: SiteProfile,
    anat: anatomy.Anatomy,
    unwrapped: np.ndarray,
    magnitude: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The phase as the scanner stores it, wrapped to [-π, π): the unwrapped phase plus a receiver
    offset and a first-order shim ramp; outside the brain, the phase of the signal with the
    magnitude's noise (random in air). Veins and the air-tissue field alias here as in vivo."""
    c = anat.coords
    true = unwrapped + 0.8 + 0.03 * c[0] + 0.02 * c[2]
    noise = rng.normal(0, 1 / site.t2star_snr, (2, *magnitude.shape)).astype(np.float32)
    z = magnitude * np.exp(1j * true) + (noise[0] + 1j * noise[1]) * ~anat.brain
    return np.angle(z).astype(np.float32)


def r2star_decay(
    iron_ppm: np.ndarray, vein_mask: np.ndarray, field_ppm: np.ndarray, voxel_mm: float
) -> np.ndarray:
    """Signal fraction left at TE by extra R2* (paramagnetic sources) and field gradients.

    - Iron-laden microglia/macrophages and diffuse lesion iron: ``ΔR2* = R2S_PER_PPM · χ``. The
      static dephasing regime (Yablonskiy & Haacke 1994) gives ~1,900 s⁻¹ per ppm of
      volume-averaged χ at 3 T; diffusion and clustering make measured slopes lower. 300 s⁻¹/ppm
      darkens the shell of a rim of median strength (0.075 ppm) by ~55 % at TE 35 ms, the clearly
      hypointense band of 3D-EPI magnitude.
    - Veins: deoxygenated blood, ``VEIN_R2S`` s⁻¹ above tissue (T2* ~12 ms against ~45 ms of white
      matter at 3 T): ~12 % of the signal is left.
    - Both are blurred by half a voxel (partial volume, blooming).
    - Macroscopic gradients: a linear field change across a voxel (Δf Hz) leaves ``|sinc(Δf·TE)|``
      per axis (Haacke et al. 1999): signal loss near air, slight blooming around strong sources.
    """
    r2s = R2S_PER_PPM * np.clip(iron_ppm, 0, None) + VEIN_R2S * vein_mask
    decay = np.exp(-TE_S * ndimage.gaussian_filter(r2s.astype(np.float32), 0.5))
    for g in np.gradient(field_ppm):
        decay = decay * np.abs(np.sinc(np.abs(g) * HZ_PER_PPM * TE_S))
    return decay.astype(np.float32)


def _magnitude_images(
    site: SiteProfile,
    anat: anatomy.Anatomy,
    maps: _LesionMaps,
    lesion_chi: np.ndarray,
    vein_mask: np.ndarray,
    field_ppm: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """T2* magnitude and FLAIR: tissue contrast, lesion changes, bias field, noise.

    The magnitude at TE is the tissue signal times ``exp(-TE · ΔR2*)`` (:func:`r2star_decay`) of
    the paramagnetic sources (rim iron, diffuse lesion iron, veins) and the intra-voxel dephasing of
    the field gradient, so rims darken with their strength and coverage, veins and air-tissue
    interfaces lose signal, and demyelinated cores stay brighter (longer T2*).
    """
    v, shape, lab = anat.voxel_mm, anat.labels.shape, anat.labels
    t2s = np.zeros(shape, np.float32)
    flair = np.zeros(shape, np.float32)
    for code in BASE_T2S:
        t2s[lab == code] = BASE_T2S[code]
        flair[lab == code] = BASE_FLAIR[code]
    bias = 1.0 + 0.08 * smooth_noise(shape, 30.0 / v, rng)
    decay = r2star_decay(lesion_chi, vein_mask, field_ppm, v)
    t2s = t2s * (1 + site.t2star_gain * maps.t2s_mod) * decay * bias
    t2s = np.abs(t2s + rng.normal(0, 1 / site.t2star_snr, shape)).astype(np.float32)
    flair = flair + site.flair_gain * maps.flair_mod * (lab >= anatomy.CORTEX)
    flair = ndimage.gaussian_filter(flair, 0.6 / v) * bias  # FLAIR is acquired at 1 mm
    flair = np.abs(flair + rng.normal(0, 1 / site.flair_snr, shape)).astype(np.float32)
    return t2s, flair


def _annotations(
    anat: anatomy.Anatomy,
    lesion_id: np.ndarray,
    lesions: list[LesionTruth],
    chi: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The annotation process of §2.3: automated segmentation, two raters, consensus, anatomy,
    air."""
    seg = _automated_segmentation(lesion_id, lesions, anat, rng)
    reported, consensus = simulate_raters(lesions, rng)
    raters = [_instances(lesion_id, said) for said in reported]
    # Lesions no rater saw are rim- by consensus: the truth table keeps the pathology separately.
    return {
        "lesion_mask": seg,
        "rim_mask": _instances(lesion_id, consensus),
        "rater1_mask": raters[0],
        "rater2_mask": raters[1],
        "anatomy": anat.labels.astype(np.uint8),
        "air_mask": _air_artefact_mask(chi, anat, anat.voxel_mm),
    }


def simulate_raters(
    lesions: list[LesionTruth], rng: np.random.Generator
) -> tuple[list[set[int]], set[int]]:
    """Two experts' pre-consensus reads and the consensus (§2.3).

    Each expert reports a rim+ lesion with a probability that grows with its visibility on phase
    (rim strength × coverage; the experts read phase and FLAIR, §2.3), so subtle rims are missed;
    rim- lesions with a vein along the edge are occasionally reported. Agreements stand;
    disagreements go to a joint review that decides right 95 % of the time. Tuned so that the two
    reads agree with kappa ≈ 0.73 and ~37 % of rim+ lesions need consensus, as in the paper.
    Returns (reports of rater 1 and 2, consensus rim+ set).
    """
    reported: list[set[int]] = []
    for _ in range(2):
        said = set()
        for les in lesions:
            if les.rim:
                visibility = les.rim_strength_ppm / 0.075 * les.rim_coverage
                p = 0.25 + 0.7 / (1 + np.exp(-(visibility - 0.7) / 0.15))
            else:
                p = 0.012 if les.vein_artefact else 0.001
            if rng.random() < p:
                said.add(les.index)
        reported.append(said)
    consensus: set[int] = set()
    for les in lesions:
        votes = sum(les.index in r for r in reported)
        if votes == 2 or (votes == 1 and (rng.random() < 0.95) == les.rim):
            consensus.add(les.index)
    return reported, consensus


def _instances(lesion_id: np.ndarray, keep: set[int]) -> np.ndarray:
    """Instance map (1..n) of the given true lesions."""
    out = np.zeros(lesion_id.shape, np.int16)
    for new, k in enumerate(sorted(keep), start=1):
        out[lesion_id == k] = new
    return out


def _automated_segmentation(
    lesion_id: np.ndarray,
    lesions: list[LesionTruth],
    anat: anatomy.Anatomy,
    rng: np.random.Generator,
) -> np.ndarray:
    """Binary automated segmentation: boundary errors, small false positives, rim+ kept separate."""
    truth = lesion_id > 0
    smooth = ndimage.gaussian_filter(truth.astype(np.float32), 0.8)
    jitter = 0.08 * smooth_noise(truth.shape, 3.0, rng)
    seg = (smooth + jitter) > 0.5
    # The technician separates rim+ lesions from confluent neighbours (§2.3): one candidate each.
    rim_ids = [les.index for les in lesions if les.rim]
    rim_mask = np.isin(lesion_id, rim_ids)
    ring = ndimage.binary_dilation(rim_mask) & ~rim_mask
    seg = (seg & ~ring) | rim_mask
    # False positives of the segmentation model: small blobs in white and grey matter.
    v = anat.voxel_mm
    tissue = np.flatnonzero(
        np.isin(anat.labels, (anatomy.WM, anatomy.CORTEX))
        & ~ndimage.binary_dilation(seg, iterations=3)
    )
    for _ in range(int(rng.poisson(10))):
        centre = anat.coords.reshape(3, -1)[:, rng.choice(tissue)]
        vol = rng.lognormal(np.log(7.0), 0.6)
        r = (3 * vol / (4 * np.pi)) ** (1 / 3)
        cv = (centre + (np.array(seg.shape) - 1) / 2 * v) / v
        box = _box(cv, int(r / v) + 2, seg.shape)
        if box is not None:
            d = np.sqrt(
                ((anat.coords[(slice(None),) + box] - centre.reshape(3, 1, 1, 1)) ** 2).sum(0)
            )
            seg[box] |= d < r
    return seg.astype(np.uint8)


def _air_artefact_mask(chi: np.ndarray, anat: anatomy.Anatomy, v: float) -> np.ndarray:
    """Brain voxels whose filtered phase is dominated by the air-tissue field (exclusion rule)."""
    air_only = np.where(anat.air, 9.2, 0.0).astype(np.float32)
    art = highpass(forward_field(air_only, v), anat.brain, 4.0, v) * RAD_PER_PPM
    return (np.abs(ndimage.gaussian_filter(art, 1.0)) > 2.0).astype(np.uint8) & anat.brain.astype(
        np.uint8
    )
