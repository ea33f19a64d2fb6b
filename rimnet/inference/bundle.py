"""Model bundles: a trained run or a CV experiment's fold models in one self-contained file.

A bundle is a ``torch.save``-d dict of tensors and plain values only, so it loads with
``torch.load(weights_only=True)`` and needs no Hydra run folder::

    format, bundle_version, rimnet_version, experiment, modalities (order = network channels),
    network (the registered class, by import path), model (its keyword arguments),
    patch (patch size, stored context, normalisation), rules (candidate rules of preprocessing),
    threshold (+ how it was chosen), members (state dicts)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from rimnet import __version__
from rimnet.data.candidates import CandidateRules
from rimnet.errors import ConfigError, RimnetError, UnsafeFileError
from rimnet.evaluation.stats import threshold_at_specificity
from rimnet.io import atomic_path, safe_load
from rimnet.models import RimNet
from rimnet.models.registry import (
    CHECKPOINT_KEY,
    NetworkError,
    build_network,
    network_name,
)

BUNDLE_FORMAT = "rimnet-bundle"
BUNDLE_VERSION = 2  # 2: RimNet convolutions before batch norm carry no bias
BUNDLE_KEYS = ("modalities", "model", "members", "threshold", "patch", "rules")


class BundleError(RimnetError):
    """A bundle that cannot be used: wrong format or version, or a modality it needs is missing."""


def _load(path: Path, what: str) -> object:
    try:
        return safe_load(path, what)
    except UnsafeFileError as exc:
        raise BundleError(str(exc)) from exc


@dataclass
class Bundle:
    """A loaded bundle: fold models (an ensemble of one or more members) plus everything needed to
    extract candidates and patches exactly as preprocessing did.

    Example:
        >>> b = Bundle.load("rimnet_phase_flair.pt")  # doctest: +SKIP
        >>> b.modalities, b.threshold, len(b.members)  # doctest: +SKIP
        (['phase', 'flair'], 0.41, 4)
    """

    modalities: list[str]
    model: dict
    members: list[dict]
    threshold: float
    patch_size: int
    context: int
    rules: dict
    threshold_rule: str = ""
    experiment: str = ""
    rimnet_version: str = __version__
    network: str = network_name(RimNet)

    def networks(self, device: str | torch.device = "cpu") -> list[torch.nn.Module]:
        """The member networks (the registered class the bundle names), in eval mode on
        ``device``."""
        nets = []
        for state in self.members:
            net = build_network(self.network, self.model)
            net.load_state_dict(state)
            nets.append(net.to(device).eval())
        return nets

    def check(self, source: str | Path) -> Bundle:
        """Raise :class:`BundleError` (naming ``source``) unless the values make sense and every
        member's weights fit the network the bundle describes; returns the bundle."""
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            raise BundleError(f"bundle {source}: threshold {t!r} is not a probability in [0, 1]")
        size, context = self.patch_size, self.context
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (size, context)) or not (
            1 <= size <= context
        ):
            raise BundleError(
                f"bundle {source}: patch size {size!r} and context {context!r} must be whole "
                "numbers with 1 <= patch size <= context"
            )
        if not self.modalities or not all(isinstance(m, str) for m in self.modalities):
            raise BundleError(f"bundle {source}: modalities {self.modalities!r} are not names")
        try:
            net = build_network(self.network, self.model)
        except (NetworkError, ConfigError) as exc:
            raise BundleError(f"bundle {source}: {exc}") from None
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        for n, state in enumerate(self.members):
            shapes = {k: tuple(getattr(v, "shape", ())) for k, v in dict(state).items()}
            if shapes != expected:
                wrong = sorted(
                    k for k in expected.keys() | shapes.keys() if shapes.get(k) != expected.get(k)
                )
                raise BundleError(
                    f"bundle {source}: the weights of model {n + 1} do not fit the network it "
                    f"describes ({self.model}; e.g. {wrong[0]}: {shapes.get(wrong[0])} where the "
                    f"network has {expected.get(wrong[0])}); export it again"
                )
        return self

    @property
    def calibrated(self) -> bool:
        """Whether the threshold was chosen on test predictions (not the 0.5 fallback)."""
        return bool(self.threshold_rule) and self.threshold_rule != UNCALIBRATED

    def candidate_rules(self) -> CandidateRules:
        return CandidateRules(**self.rules)

    def save(self, path: str | Path) -> Path:
        """Write the bundle atomically (after :meth:`check`); an existing file there is replaced
        only if it is a bundle."""
        self.check(path)
        obj = {
            "format": BUNDLE_FORMAT,
            "bundle_version": BUNDLE_VERSION,
            "rimnet_version": self.rimnet_version,
            "experiment": self.experiment,
            "modalities": list(self.modalities),
            "network": self.network,
            "model": dict(self.model),
            "patch": {
                "patch_size": self.patch_size,
                "context": self.context,
                "normalisation": "linear to [-1, 1] per patch and modality",
                "padding": "zeros outside the volume, before normalisation",
            },
            "rules": dict(self.rules),
            "threshold": float(self.threshold),
            "threshold_rule": self.threshold_rule,
            "members": [{k: v.detach().cpu() for k, v in m.items()} for m in self.members],
        }
        path = Path(path)
        if path.is_file():
            try:
                Bundle.load(path)
            except BundleError as exc:
                raise BundleError(
                    f"{path} exists and is not a RimNet bundle; rimnet will not overwrite it"
                ) from exc
        with atomic_path(path, replace=path.is_file()) as tmp:
            torch.save(obj, tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        """Load with ``weights_only=True``; raises :class:`BundleError` for a foreign or newer
        bundle."""
        path = Path(path)
        obj = _load(path, "bundle")
        if not isinstance(obj, dict) or obj.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{path} is not a RimNet bundle (no '{BUNDLE_FORMAT}' format tag)")
        if obj.get("bundle_version") != BUNDLE_VERSION:
            raise BundleError(
                f"{path} is bundle version {obj.get('bundle_version')} (made by rimnet "
                f"{obj.get('rimnet_version')}); "
                f"this rimnet {__version__} reads version {BUNDLE_VERSION}: export it again or "
                f"install a matching rimnet"
            )
        missing = [k for k in BUNDLE_KEYS if k not in obj] + [
            f"patch.{k}"
            for k in ("patch_size", "context")
            if not isinstance(obj.get("patch"), dict) or k not in obj["patch"]
        ]
        if missing:
            raise BundleError(
                f"bundle {path} lacks {', '.join(missing)}: it is incomplete; export it again"
            )
        if not obj["members"]:
            raise BundleError(f"bundle {path} holds no model")
        try:
            bundle = cls(
                modalities=list(obj["modalities"]),
                model=dict(obj["model"]),
                members=[dict(m) for m in obj["members"]],
                threshold=obj["threshold"],
                threshold_rule=obj.get("threshold_rule", ""),
                patch_size=obj["patch"]["patch_size"],
                context=obj["patch"]["context"],
                rules=dict(obj["rules"]),
                experiment=obj.get("experiment", ""),
                rimnet_version=obj.get("rimnet_version", ""),
                network=str(obj.get("network", network_name(RimNet))),
            )
        except (TypeError, ValueError) as exc:
            raise BundleError(f"bundle {path} is malformed ({exc}); export it again") from None
        return bundle.check(path)


def _read_checkpoint(ckpt: Path) -> tuple[dict, dict]:
    """(the run's description for inference, the network's state dict) of a rimnet checkpoint."""
    obj = _load(ckpt, "checkpoint")
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise BundleError(
            f"checkpoint {ckpt} has no state_dict: not a Lightning checkpoint of rimnet"
        )
    description = obj.get(CHECKPOINT_KEY)
    if not isinstance(description, dict) or not {"model", "modalities", "patch", "rules"} <= set(
        description
    ):
        raise BundleError(
            f"checkpoint {ckpt} does not describe its run for inference (written by an older "
            f"rimnet): "
            "train it again with this version"
        )
    state = {k[len("net.") :]: v for k, v in obj["state_dict"].items() if k.startswith("net.")}
    return description, state


def _same_run_kind(descriptions: list[dict], ckpts: list[Path]) -> dict:
    """The members of an ensemble must share network, modalities, patch and candidate rules."""
    keys = ("network", "model", "modalities", "patch", "rules")
    for desc, ckpt in zip(descriptions[1:], ckpts[1:]):
        differ = [k for k in keys if desc.get(k) != descriptions[0].get(k)]
        if differ:
            raise BundleError(
                f"checkpoint {ckpt} differs from {ckpts[0]} in {differ}: not one experiment's "
                f"fold models"
            )
    return descriptions[0]


UNCALIBRATED = "0.5 (no test fold with both classes to calibrate on)"


def _fold_threshold(pred_files: list[Path], specificity: float) -> tuple[float, str]:
    ths = []
    for f in pred_files:
        p = pd.read_csv(f)
        if p["label"].nunique() == 2:
            ths.append(threshold_at_specificity(p["label"], p["prob"], specificity))
    if not ths:
        return 0.5, UNCALIBRATED
    return float(sum(ths) / len(ths)), (
        f"mean over {len(ths)} test fold(s) of the threshold at {specificity:.0%} specificity "
        "on the fold's own test predictions"
    )


def export_bundle(source: str | Path, out: str | Path, specificity: float = 0.95) -> Path:
    """Export a bundle from a training run folder or a CV experiment folder.

    - a single run (``python -m rimnet.train``): its best checkpoint; threshold from its
      ``predictions.csv``;
    - a nested-CV experiment folder (``<sweep>/<experiment>``): the final model of every
      ``fold<k>``; threshold = mean of the folds' thresholds at 95 % specificity.
    """
    source = Path(source)
    fold_dirs = sorted(
        d for d in source.glob("fold*") if (d / "final" / "checkpoints" / "last.ckpt").exists()
    )
    if fold_dirs:
        ckpts = [d / "final" / "checkpoints" / "last.ckpt" for d in fold_dirs]
        preds = [d / "predictions.csv" for d in fold_dirs if (d / "predictions.csv").exists()]
    elif (source / "checkpoints").is_dir():
        best = sorted((source / "checkpoints").glob("best-*.ckpt")) or sorted(
            (source / "checkpoints").glob("last.ckpt")
        )
        if not best:
            raise BundleError(f"{source} has no checkpoint under checkpoints/")
        ckpts, preds = (
            best[-1:],
            [source / "predictions.csv"] if (source / "predictions.csv").exists() else [],
        )
    else:
        raise BundleError(
            f"{source} is neither a training run folder (checkpoints/) nor a CV experiment folder "
            "(fold*/final/checkpoints/last.ckpt)"
        )
    read = [_read_checkpoint(c) for c in ckpts]
    run = _same_run_kind([d for d, _ in read], ckpts)
    threshold, rule = _fold_threshold(preds, specificity)
    bundle = Bundle(
        modalities=list(run["modalities"]),
        model=dict(run["model"]),
        members=[state for _, state in read],
        threshold=threshold,
        threshold_rule=rule,
        patch_size=run["patch"]["patch_size"],
        context=run["patch"]["context"],
        rules=dict(run["rules"]),
        experiment=str(run.get("experiment", "")),
        network=str(run.get("network", network_name(RimNet))),
    )
    return bundle.save(out)
