"""``PackedRimNet``: K independent RimNets of one topology, computed as one network.

Convolutions become grouped convolutions (group k holds member k's filters), batch norms run over
K × C channels (so each member's statistics come from its own batch only), and the fully connected
layers become batched matrix products. Parameters stay disjoint, so K members trained together
with an elementwise optimizer (Adam) follow exactly the paths they would follow alone: one step
does K steps' work with one set of kernel launches, which is what keeps a GPU busy with small
models.

Layout: the input is (K, B, C, S, S, S) (member k's own batch at ``x[k]``), the output (K, B, 2).
Every packed parameter and buffer (but the shared batch counters) holds the members one after the
other along its first dimension: :func:`member_view` shows it as (K, ...), which is how the packed
engine's member-wise optimizer, checkpoints and pack rebuilds address one member.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rimnet.errors import ConfigError
from rimnet.models.rimnet import RimNet

BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def member_view(t: torch.Tensor, k: int) -> torch.Tensor:
    """A packed tensor as (K, ...): member i's part at ``[i]`` (a view, also in channels-last).

    Example:
        >>> member_view(torch.zeros(6, 3), 2).shape
        torch.Size([2, 3, 3])
    """
    return t.unflatten(0, (k, -1))


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

    def key_map(self) -> dict[str, str]:
        """Packed name → the member's name (the same here)."""
        return {n: n for n, _ in self.named_parameters()}


class PackedLinear(nn.Module):
    """K Linear layers of equal shape as one batched matrix product over (K, B, in) inputs."""

    def __init__(self, k: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, c_out, c_in))
        self.bias = nn.Parameter(torch.zeros(k, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight.transpose(1, 2))

    def key_map(self) -> dict[str, str]:
        return {"weight": "weight", "bias": "bias"}


class PackedBlock(nn.Module):
    """Member-wise (conv 3³ → BN → tanh) × 2 → max-pool, as RimNet's ``_block``."""

    def __init__(self, k: int, c_in: int, c_out: int) -> None:
        super().__init__()
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

    def key_map(self) -> dict[str, str]:
        # A RimNet block is Sequential(conv, bn, tanh, conv, bn, tanh, pool).
        keys = {}
        for j in range(2):
            keys[f"convs.{j}.weight"] = f"{3 * j}.weight"
            keys.update({f"bns.{j}.{n}": f"{3 * j + 1}.{n}" for n in BN_TENSORS})
        return keys


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

    def key_map(self) -> dict[str, str]:
        parts = {"block1": self.block1, "block2": self.block2, "block3": self.block3}
        if self.close is not None:
            parts["close"] = self.close
        return _prefixed(parts)


def _prefixed(parts: dict[str, nn.Module], names: dict[str, str] | None = None) -> dict[str, str]:
    """Key maps of sub-modules under their packed name and their member name (``names``)."""
    names = names or {}
    return {
        f"{p}.{packed}": f"{names.get(p, p)}.{member}"
        for p, module in parts.items()
        for packed, member in module.key_map().items()
    }


class PackedRimNet(nn.Module):
    """K independent RimNets of the same topology as one module.

    Args:
        k: number of members.
        **config: RimNet's keyword arguments (``n_modalities``, ``widths``, ``fc``, ``bottleneck``,
            ``patch_size``, ``dropout``, ``fusion``: the paper's ``early+late`` only), shared by
            every member.

    Example:
        >>> nets = [RimNet(2, widths=(4, 8, 8), fc=(16, 8, 8)) for _ in range(3)]
        >>> packed = PackedRimNet.from_models(nets)
        >>> packed(torch.zeros(3, 2, 2, 28, 28, 28)).shape, packed.k
        (torch.Size([3, 2, 2]), 3)
    """

    def __init__(self, k: int, **config: object) -> None:
        super().__init__()
        template = RimNet(**config)  # validates the configuration
        if template.fusion != "early+late" and template.n_modalities >= 2:
            raise ConfigError(
                f"engine=packed trains the paper's early+late fusion only, not fusion="
                f"{template.fusion}: use engine=sequential"
            )
        self.k, self.config = k, dict(template.config)
        self.member_shapes = {n: t.shape for n, t in template.state_dict().items()}
        c = self.config
        widths, bottleneck, sides = c["widths"], c["bottleneck"], c["n_modalities"] - 1
        self.main = PackedBranch(k, widths, bottleneck, fusion_channels=widths[0] * sides)
        self.second = PackedBranch(k, widths, bottleneck) if sides else None
        self.others = nn.ModuleList(PackedBranch(k, widths, bottleneck) for _ in range(sides - 1))
        side = c["patch_size"] // 8
        width = (bottleneck or widths[2]) * side**3 * c["n_modalities"]
        self.fc = nn.ModuleList()
        for h in c["fc"]:
            self.fc.append(PackedLinear(k, width, h))
            width = h
        self.out = PackedLinear(k, width, 2)
        self.dropout = float(c["dropout"])

    def key_map(self) -> dict[str, str]:
        """Packed state-dict key → the member's RimNet state-dict key."""
        parts: dict[str, nn.Module] = {"main": self.main}
        if self.second is not None:
            parts["second"] = self.second
        for i, branch in enumerate(self.others):
            parts[f"others.{i}"] = branch
        # head: [Dropout,] Linear, Tanh per hidden layer, then Linear
        step, offset = (3, 1) if self.dropout else (2, 0)
        names = {}
        for j, layer in enumerate(self.fc):
            parts[f"fc.{j}"], names[f"fc.{j}"] = layer, f"head.{j * step + offset}"
        parts["out"], names["out"] = self.out, f"head.{len(self.fc) * step}"
        return _prefixed(parts, names)

    def packed_tensors(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers by packed state-dict key (the tensors themselves)."""
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    @classmethod
    def from_models(cls, models: Sequence[RimNet]) -> PackedRimNet:
        """Pack RimNets of one configuration (parameters and batch-norm statistics are copied)."""
        if not models:
            raise ConfigError("PackedRimNet.from_models needs at least one RimNet")
        config = models[0].config
        differ = [i for i, m in enumerate(models) if m.config != config]
        if differ:
            raise ConfigError(f"members {differ} differ in configuration from member 0: {config}")
        first = next(models[0].parameters())
        packed = cls(len(models), **config).to(device=first.device, dtype=first.dtype)
        states = [m.state_dict() for m in models]
        with torch.no_grad():
            for key, member_key in packed.key_map().items():
                t = packed.packed_tensors()[key]
                values = [s[member_key] for s in states]
                t.copy_(values[0] if t.ndim == 0 else torch.stack(values).reshape(t.shape))
        return packed

    def member_tensors(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s parameters and buffers under RimNet's keys, as views of the packed
        tensors (differentiable: a functional call on them trains member ``i`` alone)."""
        tensors = self.packed_tensors()
        return {
            member_key: tensors[key]
            if tensors[key].ndim == 0
            else member_view(tensors[key], self.k)[i].reshape(self.member_shapes[member_key])
            for key, member_key in self.key_map().items()
        }

    def member_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s parameters and buffers under RimNet's state-dict keys (copies)."""
        return {n: t.detach().clone() for n, t in self.member_tensors(i).items()}

    def select(self, members: Sequence[int]) -> PackedRimNet:
        """A new pack of the given members, in that order (copies; e.g. without stopped ones)."""
        first = next(self.parameters())
        new = type(self)(len(members), **self.config).to(device=first.device, dtype=first.dtype)
        if self.main.block2.convs[0].weight.is_contiguous(memory_format=torch.channels_last_3d):
            new = new.to(memory_format=torch.channels_last_3d)
        index = torch.as_tensor(list(members), device=first.device)
        with torch.no_grad():
            old = self.packed_tensors()
            for key, t in new.packed_tensors().items():
                src = old[key]
                t.copy_(src if t.ndim == 0 else member_view(src, self.k)[index].reshape(t.shape))
        return new.train(self.training)

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
        sides = [] if self.second is None else [self.second, *self.others]
        s1 = [branch.block1(channels[:, :, i]) for i, branch in enumerate(sides, start=1)]
        feats = [self.main.tail(_fuse([m1, *s1], k))]
        feats += [branch.tail(s) for branch, s in zip(sides, s1)]
        h = torch.cat([f.reshape(b, k, -1) for f in feats], dim=2).transpose(0, 1)  # (K, B, F)
        for layer in self.fc:
            if self.dropout:
                h = F.dropout(h, self.dropout, self.training)
            h = torch.tanh(layer(h))
        return self.out(h)


def _fuse(parts: list[torch.Tensor], k: int) -> torch.Tensor:
    """Early fusion per member: member k's block-2 input is [main_k, second_k, ...] (RimNet's
    order); one part is returned as it is."""
    if len(parts) == 1:
        return parts[0]
    b, _, *space = parts[0].shape
    grouped = [p.reshape(b, k, -1, *space) for p in parts]
    return torch.cat(grouped, dim=2).reshape(b, -1, *space)
