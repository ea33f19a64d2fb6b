"""The learning-rate staircase of §2.6 and its fixed-schedule counterpart used by the nested CV.

Plateau mode: start at the first rate; after ``patience`` consecutive epochs without a decrease of
the validation loss (relative to the best so far), decay to the next rate; when that plateau
triggers at the last rate, stop. The epochs trained at each rate are recorded: the nested CV
aggregates them over its inner runs into a fixed schedule. Fixed mode: train ``epochs[i]`` epochs at
``rates[i]`` and stop.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl

from rimnet.errors import ConfigError

PAPER_RATES = (1e-4, 5e-5, 2.5e-5, 1e-5)


class Staircase:
    """Pure decision logic (no Lightning): feed one validation loss per epoch to :meth:`step`.

    Example:
        >>> s = Staircase(patience=1)
        >>> [s.step(v) for v in (1.0, 0.9, 0.95, 0.97, 0.99)]
        ['continue', 'continue', 'decay', 'decay', 'decay']
        >>> s.step(1.0), s.epochs_per_rate
        ('stop', [3, 1, 1, 1])
    """

    def __init__(
        self,
        rates: Sequence[float] = PAPER_RATES,
        patience: int = 3,
        fixed_epochs: Sequence[int] | None = None,
    ) -> None:
        if fixed_epochs is not None and len(fixed_epochs) != len(rates):
            raise ConfigError(
                f"fixed_epochs {list(fixed_epochs)} needs one entry per rate {list(rates)}"
            )
        self.rates, self.patience = list(rates), patience
        self.fixed_epochs = None if fixed_epochs is None else [int(e) for e in fixed_epochs]
        self.level, self.best, self.wait, self.epochs_per_rate, self.stopped = (
            0,
            float("inf"),
            0,
            [0] * len(rates),
            False,
        )

    @property
    def lr(self) -> float:
        return self.rates[self.level]

    def rate_for_epoch(self, epoch: int) -> float | None:
        """Fixed mode: the rate of ``epoch`` (0-based), or None once the schedule is complete."""
        total = 0
        for rate, n in zip(self.rates, self.fixed_epochs):
            total += n
            if epoch < total:
                return rate
        return None

    def rate_at(self, epoch: int) -> float:
        """The rate of ``epoch``: the fixed schedule's, else the plateau rule's current one."""
        if self.fixed_epochs is not None:
            return self.rate_for_epoch(epoch) or self.rates[-1]
        return self.lr

    def step(self, val_loss: float | None = None) -> str:
        """Record one finished epoch; returns ``continue``, ``decay`` or ``stop``."""
        self.epochs_per_rate[self.level] += 1
        if self.fixed_epochs is not None:
            nxt = self.rate_for_epoch(sum(self.epochs_per_rate))
            if nxt is None:
                self.stopped = True
                return "stop"
            if nxt != self.lr:
                self.level = self.rates.index(nxt, self.level)
                return "decay"
            return "continue"
        if val_loss is not None and val_loss < self.best:
            self.best, self.wait = val_loss, 0
            return "continue"
        self.wait += 1
        if self.wait < self.patience:
            return "continue"
        self.wait = 0
        if self.level == len(self.rates) - 1:
            self.stopped = True
            return "stop"
        self.level += 1
        return "decay"

    def state_dict(self) -> dict:
        return {
            "level": self.level,
            "best": self.best,
            "wait": self.wait,
            "epochs_per_rate": list(self.epochs_per_rate),
            "stopped": self.stopped,
        }

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class StaircaseLR(pl.Callback):
    """Lightning callback driving :class:`Staircase`: sets the optimiser's rate each epoch and
    stops.

    In plateau mode it reads ``monitor`` (``val/loss``) after validation; in fixed mode it needs no
    validation. The state is saved in checkpoints, so a resumed run continues the same schedule.
    """

    def __init__(
        self,
        rates: Sequence[float] = PAPER_RATES,
        patience: int = 3,
        fixed_epochs: Sequence[int] | None = None,
        monitor: str = "val/loss",
    ) -> None:
        self.staircase = Staircase(rates, patience, fixed_epochs)
        self.monitor = monitor

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        lr = self.staircase.rate_at(trainer.current_epoch)
        for opt in trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        pl_module.log("lr", lr, on_epoch=True, on_step=False)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = trainer.callback_metrics.get(self.monitor)
        if self.staircase.fixed_epochs is None and loss is None:
            return  # no validation this epoch (e.g. limit_val_batches=0)
        action = self.staircase.step(None if loss is None else float(loss))
        if action == "stop":
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return self.staircase.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.staircase.load_state_dict(state_dict)
