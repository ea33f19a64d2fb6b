"""RimNet (§2.5, Fig. 4) and its unimodal baseline.

Each branch is VGG-like: three blocks of (3×3×3 conv → batch norm → tanh) × 2 → 2×2×2 max-pool.
The main branch takes the first modality; every further modality has a branch of its own. Early
fusion: each further branch's block-1 output is concatenated to the main branch's block-1 output,
in modality order, forming the main branch's block-2 input. Each branch is closed by a 1×1×1
convolution to ``bottleneck`` channels (1 in the authors' code). Late fusion: every branch's
flattened features are concatenated and fed to a fully connected cascade (256 → 128 → 64 in the
authors' code) ending in two logits. Xavier initialisation throughout.

With one modality the network is the unimodal baseline of §2.5: one branch + the same head; with
two it is the paper's RimNet. The branches are ``main``, ``second`` and ``others.<i>`` (modality
3 + i), so one- and two-modality checkpoints keep their keys.

``fusion`` selects ablations of the multimodal topology (the paper's is ``early+late``): ``late``
(no block-1 concatenation), ``early`` (the further branches stop after block 1; the head sees the
main branch only) and ``stacked`` (one branch whose first convolution takes every modality as a
channel).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rimnet.errors import ConfigError
from rimnet.models.registry import register


def _block(c_in: int, c_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        # No bias: the batch norm that follows removes it, so its gradient is round-off only.
        layers += [nn.Conv3d(c, c_out, 3, padding=1, bias=False), nn.BatchNorm3d(c_out), nn.Tanh()]
    return nn.Sequential(*layers, nn.MaxPool3d(2))


FUSIONS = ("early+late", "late", "early", "stacked")


class Branch(nn.Module):
    """One VGG-like branch; ``fusion_channels`` extra channels join the block-2 input."""

    def __init__(
        self, widths: Sequence[int], bottleneck: int, fusion_channels: int = 0, in_channels: int = 1
    ) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.block1 = _block(in_channels, w1)
        self.block2 = _block(w1 + fusion_channels, w2)
        self.block3 = _block(w2, w3)
        self.close = nn.Conv3d(w3, bottleneck, 1) if bottleneck else nn.Identity()


@register
class RimNet(nn.Module):
    """Multimodal (one branch per modality) or unimodal (one-branch) RimNet.

    Args:
        n_modalities: 1 (unimodal baseline), 2 (the paper's RimNet) or more; channel 0 feeds the
            main branch.
        widths: channels of the three blocks (authors' code: 32, 64, 128).
        fc: hidden sizes of the fully connected cascade (authors' code: 256, 128, 64).
        bottleneck: channels of the 1×1×1 convolution closing each branch (0 = none).
        patch_size: input side (28 in the paper).
        dropout: dropout before each hidden fully connected layer (0 = none, as in the paper).
        fusion: how two modalities meet (see the module's docstring); ``early+late`` is the
            paper's RimNet, the others are ablations.

    Example:
        >>> net = RimNet(n_modalities=2, widths=(8, 16, 32))
        >>> net(torch.zeros(4, 2, 28, 28, 28)).shape
        torch.Size([4, 2])
        >>> RimNet(n_modalities=3, widths=(8, 16, 32))(torch.zeros(4, 3, 28, 28, 28)).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        n_modalities: int = 2,
        widths: Sequence[int] = (32, 64, 128),
        fc: Sequence[int] = (256, 128, 64),
        bottleneck: int = 1,
        patch_size: int = 28,
        dropout: float = 0.0,
        fusion: str = "early+late",
    ) -> None:
        super().__init__()
        if n_modalities < 1:
            raise ConfigError(f"RimNet takes 1 or more modalities, got {n_modalities}")
        if fusion not in FUSIONS:
            raise ConfigError(f"RimNet fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
        self.n_modalities, self.fusion = n_modalities, fusion
        sides = 0 if fusion == "stacked" else n_modalities - 1  # branches beside the main one
        # What rebuilds this network (plain values: checkpoints and bundles carry it).
        self.config = {
            "n_modalities": n_modalities,
            "widths": [int(w) for w in widths],
            "fc": [int(h) for h in fc],
            "bottleneck": int(bottleneck),
            "patch_size": int(patch_size),
            "dropout": float(dropout),
            "fusion": fusion,
        }
        early = sides and fusion in ("early+late", "early")
        self.main = Branch(
            widths,
            bottleneck,
            fusion_channels=widths[0] * sides if early else 0,
            in_channels=n_modalities if fusion == "stacked" else 1,
        )
        self.second = Branch(widths, bottleneck) if sides else None
        self.others = nn.ModuleList(Branch(widths, bottleneck) for _ in range(max(0, sides - 1)))
        for branch in self.side_branches():
            if fusion == "early":  # only block 1 is used
                branch.block2 = branch.block3 = branch.close = None
        side = patch_size // 8
        per_branch = (bottleneck or widths[2]) * side**3
        layers: list[nn.Module] = []
        c = per_branch * (1 + sides if fusion != "early" else 1)
        for h in fc:
            layers += ([nn.Dropout(dropout)] if dropout else []) + [nn.Linear(c, h), nn.Tanh()]
            c = h
        self.head = nn.Sequential(*layers, nn.Linear(c, 2))
        self.apply(_xavier)

    @classmethod
    def packed(cls, k: int, **config: object) -> nn.Module:
        """``k`` members of this topology as one :class:`~rimnet.models.PackedRimNet`
        (``engine=packed``)."""
        from rimnet.models.packed import PackedRimNet

        return PackedRimNet(k, **config)

    def side_branches(self) -> list[Branch]:
        """The branches of modalities 2..N, in order (none for one modality or ``stacked``)."""
        return [] if self.second is None else [self.second, *self.others]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B, 2) for patches (B, n_modalities, S, S, S)."""
        m1 = self.main.block1(x if self.fusion == "stacked" else x[:, :1])
        early, feats = [m1], []
        for i, branch in enumerate(self.side_branches(), start=1):
            s1 = branch.block1(x[:, i : i + 1])
            if self.fusion != "early":
                feats.append(branch.close(branch.block3(branch.block2(s1))))
            if self.fusion != "late":
                early.append(s1)
        m = self.main.close(self.main.block3(self.main.block2(torch.cat(early, dim=1))))
        feats = [m.flatten(1)] + [f.flatten(1) for f in feats]
        return self.head(torch.cat(feats, dim=1))


def _xavier(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv3d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
