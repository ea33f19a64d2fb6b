"""Inference for new patients: model bundles and the predictor behind ``rimnet predict``."""

from rimnet.inference.bundle import Bundle, BundleError, export_bundle
from rimnet.inference.predictor import Predictor, lesion_at, write_patient

__all__ = ["Bundle", "BundleError", "Predictor", "export_bundle", "lesion_at", "write_patient"]
