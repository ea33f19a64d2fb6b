"""MR physics of the phantom: the dipole forward model.

Phase is simulated the way it is acquired and filtered in practice (§2.2 of the paper): a
susceptibility map (ppm) is convolved with the unit dipole kernel in k-space, giving a field shift;
the phase at echo time TE is ``2π γ̄ B0 TE`` times that shift; the scanner stores it wrapped, and
the phantom then post-processes it with :func:`rimnet.prepare.phase.process_phase`.

Sign convention: positive phase = paramagnetic (a susceptibility increase raises the local field).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

GAMMA_BAR_HZ_PER_T = 42.577e6
B0_T = 3.0
TE_S = 0.035  # 3D-EPI echo time of both sites (Table 2)
RAD_PER_PPM = 2 * np.pi * GAMMA_BAR_HZ_PER_T * B0_T * TE_S * 1e-6


def dipole_kernel(shape: tuple[int, ...], voxel_mm: float, local_term: float = 0.0) -> np.ndarray:
    """Unit dipole kernel ``D(k) = 1/3 - kz²/|k|² + local_term`` for ``rfftn`` grids, B0 along z.

    ``local_term`` adds a generalized-Lorentzian local frequency shift (He & Yablonskiy 2009):
    sub-voxel sources such as iron-laden microglia in a rim shift the frequency of the voxel they
    sit in beyond the Lorentz-sphere dipole average. Without it a thin closed shell averages to zero
    field and rims would not look paramagnetic as they do in vivo. ``D(0)`` is set to
    ``local_term`` (the mean field is removed by the dipole term, as usual in QSM).
    """
    kx = np.fft.fftfreq(shape[0], d=voxel_mm)
    ky = np.fft.fftfreq(shape[1], d=voxel_mm)
    kz = np.fft.rfftfreq(shape[2], d=voxel_mm)
    KX, KY, KZ = np.meshgrid(kx, ky, kz, indexing="ij", sparse=True)
    k2 = KX**2 + KY**2 + KZ**2
    with np.errstate(invalid="ignore", divide="ignore"):
        d = 1.0 / 3.0 - KZ**2 / k2
    d[0, 0, 0] = 0.0
    return (d + local_term).astype(np.float32)


def forward_field(
    chi_ppm: np.ndarray, voxel_mm: float, local_term: float = 0.0, pad: int = 16
) -> np.ndarray:
    """Field shift (ppm) produced by a susceptibility map; zero-padded to limit wrap-around."""
    padded = np.pad(chi_ppm, pad)
    kernel = dipole_kernel(padded.shape, voxel_mm, local_term)
    field = np.fft.irfftn(np.fft.rfftn(padded) * kernel, s=padded.shape)
    sl = tuple(slice(pad, pad + n) for n in chi_ppm.shape)
    return field[sl].astype(np.float32)


def smooth_noise(shape: tuple[int, ...], sigma_vox: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-std, spatially smooth Gaussian random field.

    Wide kernels are drawn on a coarser grid and interpolated up (same spectrum, much faster).
    """
    factor = max(1, int(sigma_vox // 3))
    coarse = tuple(int(np.ceil(n / factor)) + 1 for n in shape) if factor > 1 else tuple(shape)
    f = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), sigma_vox / factor)
    if factor > 1:
        f = ndimage.zoom(f, factor, order=1)[tuple(slice(0, n) for n in shape)]
    return (f - f.mean()) / (f.std() + 1e-8)
