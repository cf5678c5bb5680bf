"""A Lightning callback that times training steps after a warm-up, shared by the benchmarks."""

import time
from typing import Any

import lightning as L
import torch


class StepClock(L.Callback):
    """Wall-clock time from the end of step ``warmup`` to the end of the last step.

    Also adds up the time spent in validation passes (``val_seconds``). CUDA is synchronised
    before each reading so that queued GPU work is counted in its step.
    """

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None
        self.steps = 0
        self.val_seconds = 0.0
        self._val_start = 0.0

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """Record the time after every optimiser step."""
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if trainer.global_step == self.warmup:
            self.start = now
        elif trainer.global_step > self.warmup:
            self.end, self.steps = now, trainer.global_step - self.warmup

    def on_validation_start(self, trainer: L.Trainer, *args: Any) -> None:
        """Start timing a validation pass."""
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, *args: Any) -> None:
        """Add the pass's duration."""
        self.val_seconds += time.perf_counter() - self._val_start

    @property
    def seconds(self) -> float | None:
        """Wall time of the ``steps`` timed steps, or ``None`` when no step was timed."""
        if self.start is None or self.end is None or self.steps == 0:
            return None
        return self.end - self.start
