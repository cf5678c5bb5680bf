"""Learning-rate schedules missing from ``torch.optim.lr_scheduler``."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class LinearWarmupCosineAnnealingLR(LRScheduler):
    """Linear warm-up followed by a cosine decay, in closed form.

    For step ``t`` (counted in calls to :meth:`step`) and base rate ``b``::

        t <  warmup_steps: lr = b * (s + (1 - s) * t / warmup_steps),  s = warmup_start_factor
        t >= warmup_steps: lr = m + (b - m) * (1 + cos(pi * (t - w) / (max_steps - w))) / 2
        t >= max_steps:    lr = m,                       m = eta_min

    Args:
        optimizer: The wrapped optimiser.
        warmup_steps: Steps of linear warm-up (0 for none).
        max_steps: Total steps; the cosine reaches ``eta_min`` there.
        warmup_start_factor: Fraction of the base rate at step 0.
        eta_min: Final learning rate.
        last_epoch: Index of the last step, ``-1`` to start fresh.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1.0)
        >>> sched = LinearWarmupCosineAnnealingLR(opt, warmup_steps=10, max_steps=100)
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int,
        max_steps: int,
        warmup_start_factor: float = 0.0,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
        if max_steps <= warmup_steps:
            raise ValueError(
                f"max_steps ({max_steps}) must exceed warmup_steps ({warmup_steps}); lower the "
                "warm-up or train for longer."
            )
        if not 0.0 <= warmup_start_factor <= 1.0:
            raise ValueError(f"warmup_start_factor must be in [0, 1], got {warmup_start_factor}.")
        self.warmup_steps = int(warmup_steps)
        self.max_steps = int(max_steps)
        self.warmup_start_factor = float(warmup_start_factor)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr: float, t: int) -> float:
        if t < self.warmup_steps:
            s = self.warmup_start_factor
            return base_lr * (s + (1.0 - s) * t / self.warmup_steps)
        if t >= self.max_steps:
            return self.eta_min
        progress = (t - self.warmup_steps) / (self.max_steps - self.warmup_steps)
        return self.eta_min + (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * progress)) / 2

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """Return the learning rate of every parameter group at the current step."""
        return [self._lr_at(base_lr, self.last_epoch) for base_lr in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()
