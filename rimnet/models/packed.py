"""``PackedRimNet``: K independent RimNets of one topology, computed as one network.

Convolutions become grouped convolutions (group k holds member k's filters), batch norms run over
K × C channels (so each member's statistics come from its own batch only), and the fully connected
layers become batched matrix products. Parameters stay disjoint, so K members trained together
with an elementwise optimizer (Adam) follow exactly the paths they would follow alone: one step
does K steps' work with one set of kernel launches, which is what keeps a GPU busy with small
models.

Layout: the input is (K, B, C, S, S, S) (member k's own batch at ``x[k]``), the output (K, B, 2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rimnet.errors import ConfigError
from rimnet.models.rimnet import RimNet


class PackedConv3d(nn.Module):
    """K Conv3d of equal shape as one grouped convolution over (B, K·C_in, ...) inputs."""

    def __init__(
        self, k: int, c_in: int, c_out: int, kernel: int, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.k, self.padding = k, padding
        self.weight = nn.Parameter(torch.empty(k * c_out, c_in, kernel, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(k * c_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.weight, self.bias, padding=self.padding, groups=self.k)

    def load_members(self, convs: Sequence[nn.Conv3d]) -> None:
        with torch.no_grad():
            self.weight.copy_(torch.cat([c.weight for c in convs]))
            if self.bias is not None:
                self.bias.copy_(torch.cat([c.bias for c in convs]))

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        n = self.weight.shape[0] // self.k
        state = {"weight": self.weight[i * n : (i + 1) * n]}
        if self.bias is not None:
            state["bias"] = self.bias[i * n : (i + 1) * n]
        return state


class PackedLinear(nn.Module):
    """K Linear layers of equal shape as one batched matrix product over (K, B, in) inputs."""

    def __init__(self, k: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, c_out, c_in))
        self.bias = nn.Parameter(torch.zeros(k, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def load_members(self, linears: Sequence[nn.Linear]) -> None:
        with torch.no_grad():
            self.weight.copy_(torch.stack([m.weight for m in linears]))
            self.bias.copy_(torch.stack([m.bias for m in linears]))

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        return {"weight": self.weight[i], "bias": self.bias[i]}


def _packed_bn(k: int, bns: Sequence[nn.BatchNorm3d] | None, channels: int) -> nn.BatchNorm3d:
    bn = nn.BatchNorm3d(k * channels)
    if bns is not None:
        with torch.no_grad():
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, name).copy_(torch.cat([getattr(b, name) for b in bns]))
            bn.num_batches_tracked.copy_(bns[0].num_batches_tracked)
    return bn


def _bn_member_state(bn: nn.BatchNorm3d, k: int, i: int) -> dict[str, torch.Tensor]:
    n = bn.num_features // k
    state = {
        name: getattr(bn, name)[i * n : (i + 1) * n]
        for name in ("weight", "bias", "running_mean", "running_var")
    }
    return {**state, "num_batches_tracked": bn.num_batches_tracked}


class PackedBlock(nn.Module):
    """Member-wise (conv 3³ → BN → tanh) × 2 → max-pool, as RimNet's ``_block``."""

    def __init__(self, k: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.k = k
        convs = [
            PackedConv3d(k, c_in, c_out, 3, 1, bias=False),
            PackedConv3d(k, c_out, c_out, 3, 1, bias=False),
        ]
        self.convs = nn.ModuleList(convs)
        self.bns = nn.ModuleList([nn.BatchNorm3d(k * c_out), nn.BatchNorm3d(k * c_out)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.bns):
            x = torch.tanh(bn(conv(x)))
        return F.max_pool3d(x, 2)

    def load_members(self, blocks: Sequence[nn.Sequential]) -> None:
        # A RimNet block is Sequential(conv, bn, tanh, conv, bn, tanh, pool).
        for j, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            conv.load_members([b[3 * j] for b in blocks])
            self.bns[j] = _packed_bn(
                self.k, [b[3 * j + 1] for b in blocks], bn.num_features // self.k
            )

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        state = {}
        for j, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            state.update({f"{3 * j}.{n}": t for n, t in conv.member_state(i).items()})
            state.update(
                {f"{3 * j + 1}.{n}": t for n, t in _bn_member_state(bn, self.k, i).items()}
            )
        return state


class PackedBranch(nn.Module):
    """Member-wise RimNet branch: three blocks and the closing 1×1×1 convolution."""

    def __init__(
        self, k: int, widths: Sequence[int], bottleneck: int, fusion_channels: int = 0
    ) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.block1 = PackedBlock(k, 1, w1)
        self.block2 = PackedBlock(k, w1 + fusion_channels, w2)
        self.block3 = PackedBlock(k, w2, w3)
        self.close = PackedConv3d(k, w3, bottleneck, 1) if bottleneck else None

    def tail(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(x))
        return x if self.close is None else self.close(x)

    def load_members(self, branches: Sequence[nn.Module]) -> None:
        for name in ("block1", "block2", "block3"):
            getattr(self, name).load_members([getattr(b, name) for b in branches])
        if self.close is not None:
            self.close.load_members([b.close for b in branches])

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        state = {}
        for name in ("block1", "block2", "block3"):
            state.update({f"{name}.{n}": t for n, t in getattr(self, name).member_state(i).items()})
        if self.close is not None:
            state.update({f"close.{n}": t for n, t in self.close.member_state(i).items()})
        return state


class PackedRimNet(nn.Module):
    """K independent RimNets of the same topology as one module.

    Args:
        k: number of members.
        **config: RimNet's keyword arguments (``n_modalities``, ``widths``, ``fc``, ``bottleneck``,
            ``patch_size``, ``dropout``), shared by every member.

    Example:
        >>> nets = [RimNet(2, widths=(4, 8, 8), fc=(16, 8, 8)) for _ in range(3)]
        >>> packed = PackedRimNet.from_models(nets)
        >>> packed(torch.zeros(3, 2, 2, 28, 28, 28)).shape, packed.k
        (torch.Size([3, 2, 2]), 3)
    """

    def __init__(self, k: int, **config: object) -> None:
        super().__init__()
        template = RimNet(**config)  # validates the configuration
        self.k, self.config = k, dict(template.config)
        c = self.config
        widths, bottleneck, two = c["widths"], c["bottleneck"], c["n_modalities"] == 2
        self.main = PackedBranch(k, widths, bottleneck, fusion_channels=widths[0] if two else 0)
        self.second = PackedBranch(k, widths, bottleneck) if two else None
        side = c["patch_size"] // 8
        width = (bottleneck or widths[2]) * side**3 * c["n_modalities"]
        self.fc = nn.ModuleList()
        for h in c["fc"]:
            self.fc.append(PackedLinear(k, width, h))
            width = h
        self.out = PackedLinear(k, width, 2)
        self.dropout = float(c["dropout"])

    @classmethod
    def from_models(cls, models: Sequence[RimNet]) -> PackedRimNet:
        """Pack RimNets of one configuration (parameters and batch-norm statistics are copied)."""
        if not models:
            raise ConfigError("PackedRimNet.from_models needs at least one RimNet")
        config = models[0].config
        differ = [i for i, m in enumerate(models) if m.config != config]
        if differ:
            raise ConfigError(f"members {differ} differ in configuration from member 0: {config}")
        packed = cls(len(models), **config)
        packed.main.load_members([m.main for m in models])
        if packed.second is not None:
            packed.second.load_members([m.second for m in models])
        linears = [[layer for layer in m.head if isinstance(layer, nn.Linear)] for m in models]
        for j, layer in enumerate([*packed.fc, packed.out]):
            layer.load_members([lin[j] for lin in linears])
        first = next(models[0].parameters())
        return packed.to(device=first.device, dtype=first.dtype)

    def member_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s parameters and buffers under RimNet's state-dict keys (copies)."""
        state = {f"main.{n}": t for n, t in self.main.member_state(i).items()}
        if self.second is not None:
            state.update({f"second.{n}": t for n, t in self.second.member_state(i).items()})
        step = (
            3 if self.dropout else 2
        )  # head: [Dropout,] Linear, Tanh per hidden layer, then Linear
        offset = 1 if self.dropout else 0
        for j, layer in enumerate(self.fc):
            state.update(
                {f"head.{j * step + offset}.{n}": t for n, t in layer.member_state(i).items()}
            )
        state.update(
            {f"head.{len(self.fc) * step}.{n}": t for n, t in self.out.member_state(i).items()}
        )
        return {n: t.detach().clone() for n, t in state.items()}

    def unpack(self) -> list[RimNet]:
        """The members as separate RimNets (on this module's device)."""
        device = next(self.parameters()).device
        nets = []
        for i in range(self.k):
            net = RimNet(**self.config).to(device)
            net.load_state_dict(self.member_state_dict(i))
            nets.append(net.train(self.training))
        return nets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (K, B, 2) for member-wise batches (K, B, C, S, S, S)."""
        k, b = x.shape[:2]
        channels = x.transpose(0, 1)  # (B, K, C, S, S, S): member k's channels at group k
        m1 = self.main.block1(channels[:, :, 0])
        if self.second is not None:
            s1 = self.second.block1(channels[:, :, 1])
            feats = [self.main.tail(_fuse(m1, s1, k)), self.second.tail(s1)]
        else:
            feats = [self.main.tail(m1)]
        h = torch.cat([f.reshape(b, k, -1) for f in feats], dim=2).transpose(0, 1)  # (K, B, F)
        for layer in self.fc:
            if self.dropout:
                h = F.dropout(h, self.dropout, self.training)
            h = torch.tanh(layer(h))
        return self.out(h)


def _fuse(main: torch.Tensor, second: torch.Tensor, k: int) -> torch.Tensor:
    """Early fusion per member: member k's block-2 input is [main_k, second_k] (RimNet's order)."""
    b, _, *space = main.shape
    parts = [main.reshape(b, k, -1, *space), second.reshape(b, k, -1, *space)]
    return torch.cat(parts, dim=2).reshape(b, -1, *space)
