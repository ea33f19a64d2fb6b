"""Training: the LightningModule, the learning-rate staircase and the training jobs."""

from rimnet.training.module import RimNetModule
from rimnet.training.schedule import Staircase, StaircaseLR

__all__ = ["RimNetModule", "Staircase", "StaircaseLR"]
