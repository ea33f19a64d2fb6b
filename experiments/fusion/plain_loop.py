"""A plain PyTorch training loop over the framework's patch cache, DataModule (its flips and
shifts) and networks: each outer fold's whole training set, Adam, a fixed number of epochs, the
last weights tested; prints the pooled AUC over the 4 test folds and each fold's.

    RIMNET_ROOT=/tmp/diag python experiments/fusion/plain_loop.py --modalities phase \\
        --network rimnet --lr 1e-3 --epochs 10 --seed 1

It separates the network and the optimisation from Lightning, checkpoint selection and the
nested protocol. Needs the ``default`` cache and splits (any ``rimnet train data=default`` run
makes them under ``$RIMNET_ROOT/data``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from rimnet.data.cache import load_cache
from rimnet.data.datamodule import PatchDataModule
from rimnet.models import RimNet


class PlainCNN(nn.Module):
    """Three blocks of conv-BN-ReLU-pool (8/16/16 channels) and one linear layer."""

    def __init__(self, n_modalities: int) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv3d(c_in, c_out, 3, padding=1), nn.BatchNorm3d(c_out), nn.ReLU(),
                nn.MaxPool3d(2),
            )  # fmt: skip

        self.features = nn.Sequential(block(n_modalities, 8), block(8, 16), block(16, 16))
        self.head = nn.Linear(16 * 3**3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


NETWORKS = {
    "plain": PlainCNN,
    "rimnet": lambda n: RimNet(n, widths=(8, 16, 32)),
    "rimnet-nobottleneck": lambda n: RimNet(n, widths=(8, 16, 32), bottleneck=0),
}


def run_fold(dm: PatchDataModule, net: nn.Module, lr: float, epochs: int, balanced: bool):
    """Train ``net`` on the DataModule's training set; the test labels and probabilities."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    y = dm.table("train")["label"].to_numpy()
    weight = (
        torch.tensor(len(y) / (2 * np.bincount(y, minlength=2)), dtype=torch.float32)
        if balanced
        else None
    )
    for epoch in range(epochs):
        net.train()
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            x, yb, _ = dm.on_after_batch_transfer(batch, 0)
            loss = F.cross_entropy(net(x), yb, weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    labels, probs = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            x, yb, _ = dm.on_after_batch_transfer(batch, 0)
            probs.append(torch.softmax(net(x), 1)[:, 1])
            labels.append(yb)
    return torch.cat(labels).numpy(), torch.cat(probs).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modalities", default="phase", help="comma-separated, e.g. phase,flair")
    ap.add_argument("--network", choices=list(NETWORKS), default="rimnet")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--offline", action="store_true", help="also train on the rim+ rotations")
    ap.add_argument("--rotate", action="store_true", help="turn every training patch at random")
    ap.add_argument("--balanced", action="store_true", help="inverse-frequency class weights")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    root = Path(os.environ.get("RIMNET_ROOT", ".")) / "data"
    cache = load_cache(root / "cache" / "default")
    splits = json.loads((root / "splits" / "default.json").read_text())
    modalities = args.modalities.split(",")
    t0, labels, probs = time.perf_counter(), [], []
    for k, fold in enumerate(splits["outer"]):
        seed = args.seed * 100 + k
        torch.manual_seed(seed)
        dm = PatchDataModule(cache, modalities, train_ids=fold["train"], test_ids=fold["test"],
                             include_offline=args.offline, rotate=args.rotate,
                             seed=seed)  # fmt: skip
        y, p = run_fold(dm, NETWORKS[args.network](len(modalities)), args.lr, args.epochs,
                        args.balanced)  # fmt: skip
        labels.append(y)
        probs.append(p)
    folds = [round(roc_auc_score(y, p), 3) for y, p in zip(labels, probs)]
    pooled = roc_auc_score(np.concatenate(labels), np.concatenate(probs))
    print(f"{args.modalities} {args.network} lr {args.lr:g} epochs {args.epochs} offline "
          f"{int(args.offline)} rotate {int(args.rotate)} balanced {int(args.balanced)} "
          f"seed {args.seed}: pooled AUC {pooled:.3f}, folds {folds}, mean {np.mean(folds):.3f} "
          f"({time.perf_counter() - t0:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
