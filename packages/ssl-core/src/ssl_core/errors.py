"""Exceptions raised by :class:`ssl_core.Module`."""

from __future__ import annotations


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; training stops before the optimiser step.

    Attributes:
        step: The ``trainer.global_step`` at which the loss was not finite.
    """

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step
