"""Registration of FLAIR (and what lives in its space) to the 3D-EPI space with SimpleITK (§2.2).

The paper used SimpleElastix: affine, adaptive stochastic gradient descent, advanced Mattes mutual
information. SimpleITK (installed with TorchIO) has the same metric but not that optimizer, so here
a rigid stage initialises an affine one, both with Mattes mutual information (50 bins, 20 % of the
voxels sampled at random from a fixed seed) and regular-step gradient descent over three
resolutions (shrink 4/2/1, smoothing 2/1/0 mm). The affine result is kept only where it improves
the metric over every voxel (on the synthetic cohort, MI drifts to a 6 % shrink that lowers the
lesion Dice from 0.85 to 0.70; the rigid result is then kept). Images are resampled linearly,
masks and label maps by nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Registration:
    """A transform from the fixed image's physical space into the moving image's, the value of
    the metric over every voxel (Mattes MI; more negative = better aligned) and its kind."""

    transform: Any  # SimpleITK transform
    metric: float
    kind: str  # rigid | affine


def read(path: str | Path) -> Any:
    """A NIfTI file as a float32 SimpleITK image."""
    import SimpleITK as sitk  # noqa: N813 (the name SimpleITK users know)

    return sitk.ReadImage(str(path), sitk.sitkFloat32)


def _method(seed: int, iterations: int) -> Any:
    import SimpleITK as sitk  # noqa: N813 (the name SimpleITK users know)

    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    r.SetMetricSamplingStrategy(r.RANDOM)
    r.SetMetricSamplingPercentage(0.2, seed + 1)  # ITK's seed 0 means the wall clock
    r.SetInterpolator(sitk.sitkLinear)
    r.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=iterations, relaxationFactor=0.6
    )
    r.SetOptimizerScalesFromPhysicalShift()
    r.SetShrinkFactorsPerLevel([4, 2, 1])
    r.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    r.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return r


def register(
    fixed: Any, moving: Any, affine: bool = True, seed: int = 0, iterations: int = 200
) -> Registration:
    """Rigid, then (``affine=True``) affine registration of ``moving`` onto ``fixed``.

    The affine result is kept only if it improves the metric over every voxel (Mattes MI can
    drift to a scaling that looks better on the sampled voxels only); else the rigid one is.

    Args:
        fixed: the reference image (the T2* magnitude, or FLAIR for a T1w).
        moving: the image to align (FLAIR, or T1w).
        affine: add the affine stage after the rigid one.
        seed: seed of the metric's random sampling (same seed, same result).
        iterations: per resolution level.

    Example:
        >>> reg = register(read("t2star.nii.gz"), read("flair.nii.gz"))  # doctest: +SKIP
        >>> reg.metric < 0  # doctest: +SKIP
        True
    """
    import SimpleITK as sitk  # noqa: N813 (the name SimpleITK users know)

    moving = sitk.Cast(moving, sitk.sitkFloat32)
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    rigid = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    r = _method(seed, iterations)
    r.SetInitialTransform(rigid, inPlace=True)
    r.Execute(fixed, moving)
    best = Registration(rigid, _full_metric(fixed, moving, rigid), "rigid")
    if affine:
        full = sitk.AffineTransform(3)
        full.SetMatrix(rigid.GetMatrix())
        full.SetTranslation(rigid.GetTranslation())
        full.SetCenter(rigid.GetCenter())
        r = _method(seed, iterations)
        r.SetInitialTransform(full, inPlace=True)
        r.Execute(fixed, moving)
        metric = _full_metric(fixed, moving, full)
        if metric < best.metric:
            best = Registration(full, metric, "affine")
    return best


def _full_metric(fixed: Any, moving: Any, transform: Any) -> float:
    """Mattes MI of ``transform`` over every voxel at full resolution."""
    import SimpleITK as sitk  # noqa: N813 (the name SimpleITK users know)

    r = sitk.ImageRegistrationMethod()
    r.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    r.SetMetricSamplingStrategy(r.NONE)
    r.SetInterpolator(sitk.sitkLinear)
    r.SetInitialTransform(transform, inPlace=False)
    return float(r.MetricEvaluate(fixed, moving))


def resample(moving: Any, reference: Any, transform: Any, label: bool) -> np.ndarray:
    """``moving`` on ``reference``'s grid through ``transform``, as a NumPy array in NIfTI (x, y,
    z) voxel order; nearest neighbour for label maps."""
    import SimpleITK as sitk  # noqa: N813 (the name SimpleITK users know)

    interp = sitk.sitkNearestNeighbor if label else sitk.sitkLinear
    out = sitk.Resample(moving, reference, transform, interp, 0.0, moving.GetPixelID())
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)


def compose(first: Any, then: Any) -> Any:
    """The transform that applies ``then`` after ``first`` (points: fixed -> ... -> moving)."""
    import SimpleITK as sitk  # noqa: N813 (the name SimpleITK users know)

    out = sitk.CompositeTransform(3)
    out.AddTransform(then)
    out.AddTransform(first)
    return out
