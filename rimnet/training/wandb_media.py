"""What a W&B run gets at test time beyond scalars, for both engines: ROC and PR curves and the
confusion matrix (``wandb.plot``), the most and least confident test patches, the seed the user
set next to the run's own, and the checkpoint it tested as a model artifact (offline runs keep
it for ``wandb sync``). The patches are the outer test fold's: nested final runs have no
validation set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rimnet.data.cache import PatchCache
from rimnet.data.contract import center_crop

PER_END = 4  # patches at each end of the confidence ranking


def is_wandb(logger: object) -> bool:
    return type(logger).__name__ == "WandbLogger"


def confidence_extremes(predictions: pd.DataFrame, k: int = PER_END) -> pd.DataFrame:
    """The ``k`` most confident calls of each class and the ``k`` least confident lesions
    (probability nearest 0.5), with a ``why`` column."""
    p = predictions
    rim_plus = p.nlargest(k, "prob").assign(why="most confident rim+")
    rim_minus = p.nsmallest(k, "prob").assign(why="most confident rim-")
    unsure = p.loc[(p["prob"] - 0.5).abs().nsmallest(k).index].assign(why="least confident")
    return pd.concat([rim_plus, rim_minus, unsure]).drop_duplicates("lesion_id")


def _patches(cache: PatchCache, lesion_ids: list[str], modalities: list[str]) -> np.ndarray:
    les = cache.lesions
    rows = les.index[(les["augmentation"] == "none") & les["lesion_id"].isin(lesion_ids)]
    order = {lid: i for i, lid in enumerate(les.loc[rows, "lesion_id"])}
    channels = cache.channels(modalities)
    size = int(cache.meta["params"]["patch_size"])
    cubes = [np.asarray(cache.patches[r][channels], np.float32) for r in rows]
    picked = [cubes[order[lid]] for lid in lesion_ids if lid in order]
    return np.stack([center_crop(c, size) for c in picked])


def log_test_media(
    loggers: list,
    predictions: pd.DataFrame,
    cache: PatchCache,
    modalities: list[str],
    seeds: dict[str, int],
    checkpoint: str | Path | None,
) -> None:
    """Log curves, confusion matrix, patch grid, seeds and the tested checkpoint to every W&B
    logger of a run (nothing without one)."""
    runs = [lg.experiment for lg in loggers if is_wandb(lg)]
    if not runs or predictions.empty:
        return
    import wandb

    from rimnet.figures import pixels
    from rimnet.figures.slices import patch_grid

    y, p = predictions["label"].to_numpy(), predictions["prob"].to_numpy()
    probas = np.stack([1 - p, p], axis=1)
    classes = ["rim-", "rim+"]
    shown = confidence_extremes(predictions)
    titles = [f"{r.why}\n{r.lesion_id}\np = {r.prob:.2f}, {classes[int(r.label)]}"
              for r in shown.itertuples()]  # fmt: skip
    grid = patch_grid(_patches(cache, list(shown["lesion_id"]), modalities), titles, modalities)
    for run in runs:
        run.config.update(seeds, allow_val_change=True)
        media = {"test/confusion_matrix": wandb.plot.confusion_matrix(
            y_true=y.tolist(), preds=(p >= 0.5).astype(int).tolist(), class_names=classes,
            title="test: rim+ at p >= 0.5")}  # fmt: skip
        if len(set(y.tolist())) == 2:  # curves need both classes
            media["test/roc"] = wandb.plot.roc_curve(y, probas, labels=classes, classes_to_plot=[1])
            media["test/pr"] = wandb.plot.pr_curve(y, probas, labels=classes, classes_to_plot=[1])
        media["test/confidence_extremes"] = wandb.Image(pixels(grid))
        run.log(media)
        if checkpoint and Path(checkpoint).is_file():
            name = "".join(c if c.isalnum() or c in "-_." else "-" for c in run.name or "run")
            artifact = wandb.Artifact(f"model-{name}", type="model")
            artifact.add_file(str(checkpoint))
            run.log_artifact(artifact, aliases=["tested"])
