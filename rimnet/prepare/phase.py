"""Phase post-processing of 3D-EPI (§2.2): scanner units, brain mask, unwrapping, high-pass filter.

The paper processed phase "as previously described" (Chavhan et al. 2009; Absinta et al. 2013):
unwrapping, then a homodyne high-pass filter that removes the background field of air-tissue
interfaces and leaves the local phase of veins, iron and myelin. Here:

- :func:`to_radians`: raw phase in radians, degrees or integer-coded (Siemens DICOM-to-NIfTI:
  -4096..4095 or 0..4095) and rescaled onto [-π, π), as the sidecar's ``Units`` says.
- :func:`brain_mask`: a head/brain mask from the magnitude (threshold, largest component, holes
  filled, 1 mm eroded), the support of both steps.
- :func:`laplacian_unwrap`: Laplacian unwrapping (Schofield & Zhu 2003), FFT-based, exact where the
  phase varies by less than π per voxel.
- :func:`homodyne_highpass`: the SWI/homodyne filter of Chavhan et al. 2009, the complex image
  divided by its low-pass: a k-space Hann window slice by slice (``hann``), or a Gaussian in image
  space (``gaussian``, the synthetic phantom's filter, :func:`gaussian_highpass`, on the complex
  image).

Sign: the framework reads positive phase as paramagnetic. Stored phase signs differ between vendors
and reconstructions; ``sign=-1`` flips it (see docs/prepare.md).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from rimnet.errors import RimnetError


class PhaseError(RimnetError):
    """Phase values that are neither radians nor integer-coded scanner phase."""


UNITS = {"rad": "rad", "radian": "rad", "radians": "rad", "deg": "deg", "degree": "deg",
         "degrees": "deg", "arbitrary": "arbitrary"}  # fmt: skip


def to_radians(
    phase: np.ndarray, where: str = "phase", units: str | None = None
) -> tuple[np.ndarray, str]:
    """Phase in radians and how it was read.

    ``units`` is the sidecar's ``Units``: ``rad`` (kept, checked within ±π) or ``deg`` (scaled by
    π/180). With ``arbitrary`` or no ``Units`` the values decide: radians within ±π, or
    integer-coded scanner phase (``int-signed`` -4096..4095 or ``int-unsigned`` 0..4095, rescaled
    onto [-π, π)); the returned description says which.

    Example:
        >>> [round(float(x), 3) for x in to_radians(np.array([-4096.0, 0.0, 2048.0]))[0]]
        [-3.142, 0.0, 1.571]
        >>> to_radians(np.array([-180.0, 90.0]), units="deg")[1]
        'degrees, Units: deg'
    """
    lo, hi = float(phase.min()), float(phase.max())
    if units is not None and str(units).lower() not in UNITS:
        raise PhaseError(f"{where}: Units {units!r} in its sidecar; expected rad, deg or arbitrary")
    unit = UNITS[str(units).lower()] if units is not None else None
    given = f", Units: {units}"
    if unit in (None, "arbitrary"):
        given = (given if unit else ", no Units in the sidecar") + ": read from the values"
    if unit == "deg":
        if lo < -360.5 or hi > 360.5:
            raise PhaseError(f"{where}: Units deg but values {lo:.4g}..{hi:.4g} exceed ±360")
        return np.deg2rad(phase).astype(np.float32), "degrees" + given
    radians = lo >= -np.pi - 1e-3 and hi <= np.pi + 1e-3
    if unit in (None, "rad") and radians:
        return phase.astype(np.float32), "radians" + given
    if unit == "rad":
        raise PhaseError(f"{where}: Units rad but values {lo:.4g}..{hi:.4g} exceed ±π")
    integer = np.allclose(phase, np.rint(phase))
    if integer and lo >= -4096 and hi <= 4095:
        if lo >= 0:
            return (phase / 4096.0 * 2 * np.pi - np.pi).astype(np.float32), "int-unsigned" + given
        return (phase / 4096.0 * np.pi).astype(np.float32), "int-signed" + given
    raise PhaseError(
        f"{where}: values {lo:.4g}..{hi:.4g} are neither radians (-π..π) nor integer-coded scanner "
        f"phase (-4096..4095 or 0..4095); is this an unwrapped or filtered phase? (set phase=... )"
    )


def brain_mask(magnitude: np.ndarray, voxel_mm: np.ndarray, erode_mm: float = 1.0) -> np.ndarray:
    """Voxels with signal: above a quarter of the 99th percentile of the smoothed magnitude, the
    largest connected component, holes filled, eroded by ``erode_mm``."""
    smooth = ndimage.gaussian_filter(magnitude.astype(np.float32), 1.0 / np.asarray(voxel_mm))
    mask = smooth > 0.25 * np.percentile(smooth, 99)
    lab, n = ndimage.label(mask)
    if n > 1:
        mask = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    mask = ndimage.binary_fill_holes(mask)
    iterations = int(round(erode_mm / float(np.min(voxel_mm))))
    if iterations:
        mask = ndimage.binary_erosion(mask, iterations=iterations)
    return mask


def _inverse_laplacian_kernel(shape: tuple[int, ...], voxel_mm: np.ndarray) -> np.ndarray:
    """Eigenvalues of the discrete 7-point Laplacian for ``rfftn`` grids (periodic)."""
    axes = [np.fft.fftfreq(n) for n in shape[:-1]] + [np.fft.rfftfreq(shape[-1])]
    grids = np.meshgrid(*axes, indexing="ij", sparse=True)
    lap = sum((2 * np.cos(2 * np.pi * g) - 2) / float(v) ** 2 for g, v in zip(grids, voxel_mm))
    return lap


def _laplacian(x: np.ndarray, voxel_mm: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for axis, v in enumerate(voxel_mm):
        out += (np.roll(x, 1, axis) + np.roll(x, -1, axis) - 2 * x) / float(v) ** 2
    return out


def laplacian_unwrap(
    phase: np.ndarray, mask: np.ndarray, voxel_mm: np.ndarray, pad: int = 8
) -> np.ndarray:
    """Laplacian phase unwrapping (Schofield & Zhu 2003) inside ``mask``.

    ∇²φ = cos φ ∇² sin φ − sin φ ∇² cos φ holds for the true phase wherever it varies slowly, so
    the unwrapped phase is the inverse Laplacian of that right-hand side (zero outside ``mask``,
    zero-padded, solved by FFT). It differs from the true phase by a harmonic function, which the
    high-pass filter removes.
    """
    v = np.asarray(voxel_mm, dtype=np.float64)
    p = np.pad(phase.astype(np.float64), pad)
    m = np.pad(mask, pad)
    s, c = np.sin(p), np.cos(p)
    rhs = (c * _laplacian(s, v) - s * _laplacian(c, v)) * ndimage.binary_erosion(m)
    kernel = _inverse_laplacian_kernel(p.shape, v)
    kernel[(0,) * p.ndim] = 1.0
    spectrum = np.fft.rfftn(rhs) / kernel
    spectrum[(0,) * p.ndim] = 0.0
    out = np.fft.irfftn(spectrum, s=p.shape)
    sl = tuple(slice(pad, pad + n) for n in phase.shape)
    return (out[sl] * mask).astype(np.float32)


def gaussian_highpass(
    phase: np.ndarray, mask: np.ndarray, sigma_mm: float, voxel_mm: float | np.ndarray
) -> np.ndarray:
    """Masked Gaussian high-pass: the phase minus its mask-normalised Gaussian low-pass.

    Example:
        >>> flat = np.ones((8, 8, 8), np.float32)
        >>> float(np.abs(gaussian_highpass(flat, flat > 0, 2.0, 1.0)).max()) < 1e-5
        True
    """
    sigma = sigma_mm / np.asarray(voxel_mm, dtype=np.float64)
    m = mask.astype(np.float32)
    low = ndimage.gaussian_filter(phase * m, sigma) / np.maximum(
        ndimage.gaussian_filter(m, sigma), 1e-3
    )
    return ((phase - low) * m).astype(np.float32)


def homodyne_highpass(
    phase: np.ndarray,
    mask: np.ndarray,
    voxel_mm: np.ndarray,
    window: str = "hann",
    kernel: int = 96,
    sigma_mm: float = 4.0,
    magnitude: np.ndarray | None = None,
) -> np.ndarray:
    """Homodyne high-pass (Chavhan et al. 2009): the phase of the complex image divided by its
    low-pass, so 2π errors of unwrapping and wraps in veins do not spread.

    Args:
        phase: wrapped or unwrapped phase (radians).
        mask: support; the output is 0 outside.
        voxel_mm: voxel sizes (for ``gaussian``).
        window: ``hann``: per axial slice, a ``kernel`` x ``kernel`` Hann window at the centre of
            k-space (the scanner-console filter); ``gaussian``: a masked Gaussian of ``sigma_mm``
            in image space (the synthetic phantom's filter, :func:`gaussian_highpass`, done on the
            complex image).
        magnitude: weights of the complex image (default 1).
    """
    mag = np.ones(phase.shape) if magnitude is None else magnitude.astype(np.float64)
    z = mag * mask * np.exp(1j * phase.astype(np.float64))
    if window == "hann":
        nx, ny = phase.shape[:2]
        win = np.outer(_hann(nx, kernel), _hann(ny, kernel))
        k = np.fft.fftshift(np.fft.fft2(z, axes=(0, 1)), axes=(0, 1))
        low = np.fft.ifft2(np.fft.ifftshift(k * win[..., None], axes=(0, 1)), axes=(0, 1))
    elif window == "gaussian":
        sigma = sigma_mm / np.asarray(voxel_mm, dtype=np.float64)
        low = ndimage.gaussian_filter(z.real, sigma) + 1j * ndimage.gaussian_filter(z.imag, sigma)
    else:
        raise PhaseError(f"phase_filter={window!r}; choose hann or gaussian")
    return (np.angle(z * np.conj(low)) * mask).astype(np.float32)


def _hann(n: int, width: int) -> np.ndarray:
    """A centred Hann window of ``width`` points (at most ``n``) on an fftshifted ``n``-axis."""
    width = min(width, n)
    out = np.zeros(n)
    start = n // 2 - width // 2
    out[start : start + width] = np.hanning(width + 2)[1:-1]
    return out


def process_phase(
    phase: np.ndarray,
    magnitude: np.ndarray,
    voxel_mm: np.ndarray,
    steps: str = "raw",
    highpass: str = "hann",
    kernel: int = 96,
    sigma_mm: float = 4.0,
    sign: int = 1,
    where: str = "phase",
    units: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Filtered phase (radians, positive = paramagnetic) and the steps done.

    Args:
        phase: the phase image as stored.
        magnitude: the 3D-EPI magnitude on the same grid (brain mask, homodyne weights).
        voxel_mm: voxel sizes.
        steps: what the input already is: ``raw`` (wrapped; unwrap + filter), ``unwrapped``
            (filter only) or ``filtered`` (nothing but the sign).
        highpass: the homodyne filter's low-pass: ``hann`` (k-space window of ``kernel`` points)
            or ``gaussian`` (``sigma_mm``).
        sign: ``1`` or ``-1``: the stored phase's sign relative to "positive = paramagnetic".
        where: what to name in errors.
        units: the sidecar's ``Units`` of a raw phase (:func:`to_radians`).
    """
    done: list[str] = []
    if steps not in ("raw", "unwrapped", "filtered"):
        raise PhaseError(f"phase={steps!r}; choose raw, unwrapped or filtered")
    if sign not in (1, -1):
        raise PhaseError(f"phase_sign={sign}; choose 1 or -1")
    mask = brain_mask(magnitude, voxel_mm)
    out = phase.astype(np.float32)
    if steps == "raw":
        out, read = to_radians(out, where, units)
        done.append(f"scaled ({read})")
        out = laplacian_unwrap(out, mask, voxel_mm)
        done.append("unwrapped (Laplacian)")
    if steps in ("raw", "unwrapped"):
        out = homodyne_highpass(out, mask, voxel_mm, highpass, kernel, sigma_mm, magnitude)
        what = f"Hann {kernel}x{kernel}" if highpass == "hann" else f"Gaussian {sigma_mm} mm"
        done.append(f"high-pass (homodyne, {what})")
    if sign == -1:
        out = -out
        done.append("sign flipped")
    return out.astype(np.float32), done
