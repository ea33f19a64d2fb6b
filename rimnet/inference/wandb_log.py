"""The QC montages of ``rimnet predict --wandb`` in a W&B run, for groups that review there.

One run per ``predict`` call (group ``predict``, files under the output folder): per patient its
overview and one card per candidate (the report's pictures, captioned with decision and
probability), and at the end the tables ``lesions`` and ``patients``. ``WANDB_MODE`` decides
online/offline as for training (offline when unset; ``wandb sync`` uploads an offline run later).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rimnet.figures import pixels
from rimnet.inference.report import PatientFigures, card_caption
from rimnet.tracking import wandb_run


class PredictLog:
    """A W&B run that receives each patient's montages as :func:`rimnet.predict.run` makes them.

    Args:
        out_dir: the predictions folder; the run's files go to ``out_dir/wandb``.
        bundle_name: the bundle's file name (run name and config).
        config: more values for the run's config (threshold, TTA, ...).

    Example:
        >>> log = PredictLog(Path("results"), "rimnet.pt", {"tta": False})
        >>> log.patient(result, patient_figures(result))
        >>> log.finish(lesions_all, patients)
    """

    def __init__(self, out_dir: Path, bundle_name: str, config: dict) -> None:
        import wandb

        self._wandb = wandb
        self.run = wandb_run(
            "predict",
            f"predict-{Path(bundle_name).stem}-{out_dir.name}",
            out_dir,
            {"bundle": bundle_name, **config},
        )

    def patient(self, result, figures: PatientFigures) -> None:
        """Log one patient's overview and candidate cards (``qc/<patient>/...``)."""
        s, pid = result.summary, result.patient_id
        verdict = "chronic active" if s["chronic_active"] else "not chronic active"

        def image(data: bytes, caption: str) -> object:
            return self._wandb.Image(pixels(data), caption=caption)

        self.run.log(
            {
                f"qc/{pid}/overview": image(
                    figures.overview, caption=f"{pid}: {s['rim_pos_count']} rim+, {verdict}"
                ),
                f"qc/{pid}/cards": [
                    image(card, caption=f"{les.lesion_id}: {card_caption(les, s['members'])}")
                    for les, card in figures.cards
                ],
            }
        )

    def finish(self, lesions: pd.DataFrame, patients: pd.DataFrame) -> None:
        """Log the cohort's tables and close the run."""
        try:
            for key, table in (("lesions", lesions), ("patients", patients)):
                if len(table):
                    self.run.log({key: self._wandb.Table(dataframe=table.astype(str))})
        finally:
            self.run.finish()
