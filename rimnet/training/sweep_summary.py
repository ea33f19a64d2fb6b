"""The table printed at the end of a sweep (``rimnet train -m``) and written as ``summary.csv``
in the sweep folder: one row per job folder ``<experiment>/fold<k>`` with its status and the
AUROC of its outer-test predictions. A Hydra callback (``conf/hydra/default.yaml``); it reads
the job folders only, so it also summarises jobs an earlier sweep finished."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)
COLUMNS = ["experiment", "seed", "fold", "status", "test_auroc", "lesions", "folder"]


def _status(job: Path) -> str:
    record = job / "job.json"
    if record.is_file():  # a nested job records its own status
        try:
            return str(json.loads(record.read_text()).get("status", "unknown"))
        except (OSError, ValueError):
            return "unreadable job.json"
    return "done" if (job / "predictions.csv").is_file() else "no predictions"


def _auroc(job: Path) -> tuple[float, int]:
    from sklearn.metrics import roc_auc_score

    path = job / "predictions.csv"
    try:
        pred = pd.read_csv(path)
        if pred["label"].nunique() == 2:
            return float(roc_auc_score(pred["label"], pred["prob"])), len(pred)
        return float("nan"), len(pred)
    except (OSError, ValueError, KeyError, pd.errors.EmptyDataError):
        return float("nan"), 0


def sweep_summary(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job folder (``<experiment>/fold<k>``, or ``seed<s>/<experiment>/fold<k>`` in a
    study over seeds) of ``sweep_dir``.

    Example:
        >>> sweep_summary("outputs/sweeps/default/2026-11-30_10-00-00")  # doctest: +SKIP
          experiment seed  fold status  test_auroc  lesions  folder
        0      phase          0   done       0.912      172  phase/fold0
    """
    root = Path(sweep_dir)
    rows = []
    jobs = [*root.glob("*/fold*"), *root.glob("seed*/*/fold*")]
    for job in sorted(p for p in jobs if p.is_dir() and not p.is_symlink()):
        if not job.name[4:].isdigit():
            continue
        auc, n = _auroc(job)
        seed = job.parent.parent.name
        rows.append(
            {
                "experiment": job.parent.name,
                "seed": seed[4:] if seed.startswith("seed") and job.parent.parent != root else "",
                "fold": int(job.name[4:]),
                "status": _status(job),
                "test_auroc": round(auc, 4),
                "lesions": n,
                "folder": str(job.relative_to(root)),
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def write_sweep_summary(sweep_dir: str | Path) -> Path | None:
    """Write ``summary.csv`` in ``sweep_dir`` and log the table; None when it holds no job."""
    from rimnet.io import atomic_path

    table = sweep_summary(sweep_dir)
    if table.empty:
        return None
    path = Path(sweep_dir) / "summary.csv"
    with atomic_path(path, replace=path.is_file()) as tmp:
        table.to_csv(tmp, index=False)
    log.info("sweep summary (%s):\n%s", path, table.drop(columns="folder").to_string(index=False))
    return path


try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover (hydra-core is a dependency)
    Callback = object


class SweepSummary(Callback):
    """Hydra callback: a failed job named when it fails (Hydra runs the sweep's other jobs and
    raises the first failure only at its end), and :func:`write_sweep_summary` when a multirun
    ends."""

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.utils import JobStatus

        if job_return.status == JobStatus.FAILED:
            error = job_return._return_value  # the exception (``return_value`` would raise it)
            trace = "".join(traceback.format_exception(error))
            log.error(
                f"job {config.experiment_name} fold {config.fold} failed; the sweep goes on and "
                f"reports the failure when it ends:\n{trace}"
            )

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        write_sweep_summary(config.hydra.sweep.dir)
