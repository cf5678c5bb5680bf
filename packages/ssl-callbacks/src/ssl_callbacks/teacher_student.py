"""EMA teacher updates after each optimiser step."""

from __future__ import annotations

import math
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn


def _wrappers(module: nn.Module) -> list[nn.Module]:
    from ssl_core import TeacherStudentWrapper  # imported here: ssl_core is optional at import

    return [m for m in module.modules() if isinstance(m, TeacherStudentWrapper)]


def training_progress(trainer: Trainer) -> float:
    """``trainer.global_step / trainer.estimated_stepping_batches`` clamped to ``[0, 1]``.

    An unknown or infinite number of steps gives 0 (the base EMA coefficient).
    """
    total = trainer.estimated_stepping_batches
    if not total or not math.isfinite(total) or total <= 0:
        return 0.0
    return min(1.0, max(0.0, trainer.global_step / total))


class TeacherStudentCallback(Callback):
    """Call ``update_teacher(progress)`` on every ``ssl_core.TeacherStudentWrapper`` of the module.

    The update runs in ``on_train_batch_end`` only when an optimiser step happened in that batch
    (``trainer.global_step`` advanced), so with ``accumulate_grad_batches=n`` it runs once every
    ``n`` batches. ``progress = trainer.global_step / trainer.estimated_stepping_batches``, clamped
    to ``[0, 1]``. Stateless: on resume the step counter comes from the trainer.

    Example:
        >>> trainer = Trainer(callbacks=[TeacherStudentCallback()])  # doctest: +SKIP
    """

    def __init__(self) -> None:
        super().__init__()
        self._last_step: int | None = None
        self.updates = 0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Remember the step count training starts from."""
        self._last_step = trainer.global_step

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Update the teachers if the optimiser stepped."""
        step = trainer.global_step
        if self._last_step is not None and step == self._last_step:
            return
        self._last_step = step
        progress = training_progress(trainer)
        for wrapper in _wrappers(pl_module):
            wrapper.update_teacher(progress)
        self.updates += 1
