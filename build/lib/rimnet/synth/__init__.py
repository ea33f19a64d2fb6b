"""Synthetic MS cohort: anatomy, MR physics and the annotation process, written as NIfTI +
cohort.csv."""

from rimnet.synth.cohort import SCALES, generate_cohort

__all__ = ["SCALES", "generate_cohort"]
