"""Does ``rimnet prepare`` give the model what the direct path gives? (issue 13's checks)

    python benchmarks/prepare_fidelity.py [--scale default] [--epochs 6] [--root DIR]

Writes the same synthetic patients twice: as the data contract (the direct path) and as BIDS (raw
wrapped phase, 1 mm FLAIR with head motion, masks and aseg in FLAIR space), and prepares the BIDS
copy with ``rimnet prepare ... phase_filter=gaussian`` (the phantom's filter). Then trains one
phase + FLAIR run on the direct path's outer fold 0 (``python -m rimnet.train``), exports it, and
predicts fold 0's test patients from both cohorts. Prints per-patient lesion Dice, candidate
counts, the phase correlation, and the AUROC of the same bundle on each path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from rimnet.data.candidates import extract_candidates
from rimnet.data.cohort import load_patient, read_cohort
from rimnet.inference import Predictor
from rimnet.inference.bundle import export_bundle
from rimnet.prepare.cohort import PrepareConfig, prepare_bids
from rimnet.synth.cohort import generate_cohort

REPO = Path(__file__).resolve().parents[1]


def labelled_predictions(predictor: Predictor, row: pd.Series) -> pd.DataFrame:
    """The bundle's probabilities with the consensus label of every assessed candidate."""
    vol = load_patient(row, predictor.bundle.modalities)
    result = predictor.predict_volumes(vol)
    table, _ = extract_candidates(
        vol.masks["lesion_mask"], vol.affine, predictor.bundle.candidate_rules(),
        rim_mask=vol.masks.get("rim_mask"),
    )  # fmt: skip
    out = result.lesions.merge(table[["lesion_index", "label"]], on="lesion_index")
    return out[(out.excluded == "") & (out.label >= 0)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", default="default", choices=["smoke", "default", "paper"])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--root", type=Path, default=None)
    args = ap.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="rimnet-fidelity-"))
    direct_csv = generate_cohort(root / "data" / "synth" / args.scale, args.scale, progress=False)
    bids = generate_cohort(root / "bids", args.scale, progress=False, fmt="bids")
    cfg = PrepareConfig(phase_filter="gaussian", n_jobs=max(1, (os.cpu_count() or 2) // 2))
    prepared_csv = prepare_bids(bids, root / "prepared", cfg, progress=False)
    direct, prepared = read_cohort(direct_csv), read_cohort(prepared_csv)
    print(
        f"{'patient':8s} {'dice':>5s} {'cand direct':>11s} {'cand prepared':>13s} {'phase r':>7s}"
    )  # noqa: E501
    for d, p in zip(direct.itertuples(), prepared.itertuples()):
        a = np.asarray(nib.load(d.lesion_mask).dataobj) > 0
        b = np.asarray(nib.load(p.lesion_mask).dataobj) > 0
        brain = np.asarray(nib.load(d.anatomy).dataobj) >= 2
        pa = np.asarray(nib.load(d.phase).dataobj)[brain]
        pb = np.asarray(nib.load(p.phase).dataobj)[brain]
        na = len(extract_candidates(a.astype(np.uint8), np.eye(4))[0])
        nb = len(extract_candidates(b.astype(np.uint8), np.eye(4))[0])
        dice = 2 * (a & b).sum() / (a.sum() + b.sum())
        print(f"{d.patient_id:8s} {dice:5.3f} {na:11d} {nb:13d} {np.corrcoef(pa, pb)[0, 1]:7.3f}")
    run = root / "run"
    cmd = [
        sys.executable, "-m", "rimnet.train", "experiment=phase_flair", f"data={args.scale}",
        "protocol=single", "fold=0", "logger=csv", f"trainer.max_epochs={args.epochs}",
        "~callbacks.progress_bar", "+trainer.enable_progress_bar=false",
        f"hydra.run.dir={run}",
    ]  # fmt: skip
    env = {**os.environ, "RIMNET_ROOT": str(root), "WANDB_MODE": "offline"}
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    bundle = export_bundle(run, root / "bundle.pt")
    test = json.loads((root / "data" / "splits" / f"{args.scale}.json").read_text())
    test_ids = test["outer"][0]["test"]
    predictor = Predictor(bundle)
    for name, cohort in (("direct", direct), ("prepared", prepared)):
        rows = cohort[cohort.patient_id.isin(test_ids)]
        preds = pd.concat([labelled_predictions(predictor, r) for _, r in rows.iterrows()])
        auc = roc_auc_score(preds.label, preds.prob)
        print(f"{name:8s}: {len(preds)} assessed lesions ({int(preds.label.sum())} rim+) of "
              f"{len(rows)} test patients, AUROC {auc:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
