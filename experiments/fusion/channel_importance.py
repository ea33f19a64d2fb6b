"""Which modality does a trained two-branch RimNet rely on? Permutation importance per channel.

For each fold's tested checkpoint of a sweep, the test AUC with the patches as they are, then with
one channel's patches shuffled across the test lesions (the other channel kept): the drop in AUC
is what the network reads from that channel. The pooled AUCs over the 4 folds are printed.

    RIMNET_ROOT=/tmp/diag python experiments/fusion/channel_importance.py \\
        /tmp/diag/seeds-lr/seed1/phase_flair

Needs the ``default`` cache and splits the sweep was trained on.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from rimnet.data.cache import load_cache
from rimnet.data.datamodule import PatchDataModule
from rimnet.models.registry import CHECKPOINT_KEY, build_network


def tested_checkpoint(fold_dir: Path) -> Path:
    """The checkpoint a single run tested: its best one (the last one without validation)."""
    best = sorted((fold_dir / "checkpoints").glob("best*.ckpt"))
    return best[-1] if best else fold_dir / "checkpoints" / "last.ckpt"


def load_net(path: Path) -> tuple[torch.nn.Module, list[str]]:
    """The checkpoint's network (eval mode) and the modalities it was trained on."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    info = ckpt[CHECKPOINT_KEY]
    net = build_network(info["network"], info["model"])
    net.load_state_dict({k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")})
    return net.eval(), list(info["modalities"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sweep", type=Path, help="<sweep>/<experiment> holding fold0..fold3")
    ap.add_argument("--repeats", type=int, default=5, help="shuffles per channel")
    args = ap.parse_args()
    root = Path(os.environ.get("RIMNET_ROOT", ".")) / "data"
    cache = load_cache(root / "cache" / "default")
    outer = json.loads((root / "splits" / "default.json").read_text())["outer"]
    rng = np.random.default_rng(0)
    labels, probs = [], {}  # probs[case][repeat] = list of each fold's probabilities
    for k, fold in enumerate(outer):
        net, modalities = load_net(tested_checkpoint(args.sweep / f"fold{k}"))
        dm = PatchDataModule(cache, modalities, test_ids=fold["test"])
        x = torch.cat([b[0] for b in dm.test_dataloader()])
        labels.append(dm.table("test")["label"].to_numpy())
        with torch.no_grad():
            probs.setdefault("as is", [[]])[0].append(net(x).softmax(1)[:, 1].numpy())
            for c, name in enumerate(modalities):
                case = probs.setdefault(f"{name} shuffled", [[] for _ in range(args.repeats)])
                for r in range(args.repeats):
                    shuffled = x.clone()
                    shuffled[:, c] = x[rng.permutation(len(x)), c]
                    case[r].append(net(shuffled).softmax(1)[:, 1].numpy())
    y = np.concatenate(labels)
    for name, repeats in probs.items():
        aucs = [roc_auc_score(y, np.concatenate(p)) for p in repeats]
        print(f"{args.sweep}: {name:16} pooled AUC {np.mean(aucs):.3f}")


if __name__ == "__main__":
    main()
