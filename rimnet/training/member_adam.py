"""``MemberAdam``: Adam over the packed tensors of a :class:`~rimnet.models.PackedRimNet`, with a
learning rate, a step count and an on/off switch per member.

Adam is elementwise, so updating member k's slice of every packed tensor with member k's rate and
bias correction is exactly what member k's own ``torch.optim.Adam`` would do. A member that does
not step (its epoch is over, or it has stopped) keeps its parameters and moments unchanged. The
arithmetic follows ``torch.optim.Adam``'s single-tensor path (``lerp`` for the first moment,
``mul``/``addcmul`` for the second, bias corrections in float64).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from rimnet.errors import ConfigError
from rimnet.models.packed import PackedRimNet, member_view


class MemberAdam(torch.optim.Optimizer):
    """Member-wise Adam for a pack of K members, as a ``torch.optim.Optimizer`` (Lightning saves
    and restores its state; ``step`` takes the members' switches and rates).

    Args:
        packed: the pack whose parameters it updates.
        betas, eps, weight_decay: Adam's constants (shared by all members, as the config is).

    Example:
        >>> from rimnet.models import RimNet
        >>> packed = PackedRimNet.from_models([RimNet(1, widths=(2, 2, 2), fc=(4,))] * 2)
        >>> opt = MemberAdam(packed)
        >>> packed(torch.zeros(2, 3, 1, 28, 28, 28)).sum().backward()
        >>> opt.step(torch.tensor([True, False]), torch.tensor([1e-4, 1e-4]))
        >>> opt.steps.tolist()
        [1.0, 0.0]
    """

    def __init__(
        self,
        packed: PackedRimNet,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.packed, self.k = packed, packed.k
        self.betas, self.eps, self.weight_decay = (
            (float(betas[0]), float(betas[1])),
            eps,
            weight_decay,
        )
        self.params = dict(packed.named_parameters())
        defaults = {"lr": 0.0, "betas": self.betas, "eps": eps, "weight_decay": weight_decay}
        super().__init__(list(self.params.values()), defaults)
        for p in self.params.values():
            self.state[p]["exp_avg"] = torch.zeros_like(p)
            self.state[p]["exp_avg_sq"] = torch.zeros_like(p)
        first = next(iter(self.params.values()))
        self.state[first]["member_steps"] = torch.zeros(
            self.k, dtype=torch.float64, device=first.device
        )

    @property
    def exp_avg(self) -> dict[str, torch.Tensor]:
        return {n: self.state[p]["exp_avg"] for n, p in self.params.items()}

    @property
    def exp_avg_sq(self) -> dict[str, torch.Tensor]:
        return {n: self.state[p]["exp_avg_sq"] for n, p in self.params.items()}

    @property
    def steps(self) -> torch.Tensor:
        """Steps taken by each member (K,), float64."""
        return self.state[next(iter(self.params.values()))]["member_steps"]

    @classmethod
    def from_optimizer(cls, packed: PackedRimNet, optimizer: torch.optim.Optimizer) -> MemberAdam:
        """Take Adam's constants from a member's configured optimizer (only plain Adam packs)."""
        if type(optimizer) is not torch.optim.Adam:
            raise ConfigError(
                f"engine=packed trains with Adam (the paper's optimizer), not "
                f"{type(optimizer).__name__}: use engine=sequential for other optimizers"
            )
        d = optimizer.defaults
        if d.get("amsgrad") or d.get("maximize") or d.get("decoupled_weight_decay"):
            raise ConfigError("engine=packed supports plain Adam (no amsgrad, maximize, AdamW)")
        return cls(packed, d["betas"], d["eps"], d["weight_decay"])

    @torch.no_grad()
    def step(  # type: ignore[override]
        self,
        active: torch.Tensor | None = None,
        lrs: torch.Tensor | None = None,
        closure: Callable[[], Any] | None = None,
    ) -> None:
        """One Adam step for the members where ``active`` (K,) is true, at rates ``lrs`` (K,)."""
        if closure is not None:
            with torch.enable_grad():
                closure()
        if active is None or lrs is None:
            raise ValueError("MemberAdam.step needs each member's switch and rate")
        beta1, beta2 = self.betas
        self.steps.add_(active.to(self.steps))
        steps = self.steps.clamp(min=1)  # a member that never stepped is masked out below
        step_size = lrs.to(self.steps) / (1 - beta1**steps)
        bc2_sqrt = (1 - beta2**steps).sqrt()
        for name, p in self.params.items():
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            pv, gv = member_view(p, self.k), member_view(grad, self.k)
            mv, vv = (
                member_view(self.exp_avg[name], self.k),
                member_view(self.exp_avg_sq[name], self.k),
            )
            shape = (self.k,) + (1,) * (pv.ndim - 1)
            on = active.view(shape)
            if self.weight_decay:
                gv = gv.add(pv, alpha=self.weight_decay)
            m = mv.lerp(gv, 1 - beta1)
            v = vv.mul(beta2).addcmul_(gv, gv, value=1 - beta2)
            denom = (v.sqrt() / bc2_sqrt.to(p.dtype).view(shape)).add_(self.eps)
            new = pv - step_size.to(p.dtype).view(shape) * (m / denom)
            pv.copy_(torch.where(on, new, pv))
            mv.copy_(torch.where(on, m, mv))
            vv.copy_(torch.where(on, v, vv))

    def member_state(self, i: int, lr: float, names: Sequence[str], group: dict) -> dict:
        """Member ``i``'s state as its own ``torch.optim.Adam.state_dict()`` would be.

        Args:
            i: the member's slot.
            lr: its current rate.
            names: its RimNet's parameter names in the optimizer's order.
            group: the optimizer's ``param_groups[0]`` entry of its state dict (constants).
        """
        keys = self.packed.key_map()
        moments = {
            keys[n]: (
                member_view(self.exp_avg[n], self.k)[i],
                member_view(self.exp_avg_sq[n], self.k)[i],
            )
            for n in self.params
        }
        shapes = self.packed.member_shapes
        state = {}
        if float(self.steps[i]) > 0:
            step = torch.tensor(float(self.steps[i]))
            for j, key in enumerate(names):
                m, v = moments[key]
                state[j] = {
                    "step": step.clone(),
                    "exp_avg": m.reshape(shapes[key]).clone(),
                    "exp_avg_sq": v.reshape(shapes[key]).clone(),
                }
        return {"state": state, "param_groups": [{**group, "lr": lr}]}

    @torch.no_grad()
    def load_member_state(self, i: int, state: dict, names: Sequence[str]) -> None:
        """Put a member's saved Adam state (today's checkpoint format) into slot ``i``."""
        by_member = {m: n for n, m in self.packed.key_map().items()}
        entries = state.get("state", {})
        for j, key in enumerate(names):
            entry = entries.get(j) or entries.get(str(j))
            if entry is None:
                continue
            name = by_member[key]
            for moments, saved in ((self.exp_avg, "exp_avg"), (self.exp_avg_sq, "exp_avg_sq")):
                slot = member_view(moments[name], self.k)[i]
                slot.copy_(entry[saved].to(slot).reshape(slot.shape))
            self.steps[i] = float(entry["step"])
