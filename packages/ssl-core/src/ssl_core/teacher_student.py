"""An exponential-moving-average teacher of a student network (BYOL, DINO, MoCo v3)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


def ema_coefficient(progress: float, base: float, final: float) -> float:
    """Return the cosine-scheduled EMA coefficient at ``progress`` in ``[0, 1]``.

    ``final - (final - base) * (cos(pi * progress) + 1) / 2``: ``base`` at 0, ``final`` at 1.

    Args:
        progress: Fraction of training done; values outside ``[0, 1]`` are clamped.
        base: Coefficient at the start.
        final: Coefficient at the end.

    Returns:
        The coefficient.
    """
    progress = min(max(float(progress), 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class TeacherStudentWrapper(nn.Module):
    """A student network and its EMA teacher.

    ``forward`` runs the student; :meth:`forward_teacher` runs the teacher without gradients.
    :meth:`update_teacher` moves every teacher parameter and floating-point buffer towards the
    student's, ``teacher = c * teacher + (1 - c) * student``, with ``c`` cosine-scheduled from
    ``base_ema_coefficient`` to ``final_ema_coefficient`` over the training progress; integer
    buffers (BatchNorm's ``num_batches_tracked``) are copied. The teacher starts as a copy of
    the student, never requires gradients, is saved in ``state_dict`` and follows the wrapper's
    train/eval mode like any submodule: in training its normalisation layers use batch
    statistics, as the target network of BYOL (Grill et al., 2020) and solo-learn's momentum
    methods do; in evaluation they use running statistics (its own, blended with the EMA of the
    student's). ``ssl_callbacks.TeacherStudentCallback`` calls
    ``update_teacher(global_step / estimated_stepping_batches)`` after each optimiser step.

    Args:
        student: The network being trained.
        base_ema_coefficient: EMA coefficient at the start of training, in ``[0, 1]``.
        final_ema_coefficient: EMA coefficient at the end of training, in ``[0, 1]``.

    Example:
        >>> wrapper = TeacherStudentWrapper(torch.nn.Linear(4, 2))
        >>> y_student = wrapper(torch.randn(3, 4))
        >>> y_teacher = wrapper.forward_teacher(torch.randn(3, 4))
        >>> wrapper.update_teacher(progress=0.5)
    """

    def __init__(
        self,
        student: nn.Module,
        base_ema_coefficient: float = 0.996,
        final_ema_coefficient: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(student, nn.Module):
            raise TypeError(f"student must be an nn.Module, got {type(student).__name__}.")
        for name, value in (
            ("base_ema_coefficient", base_ema_coefficient),
            ("final_ema_coefficient", final_ema_coefficient),
        ):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")
        self.base_ema_coefficient = float(base_ema_coefficient)
        self.final_ema_coefficient = float(final_ema_coefficient)
        self.student = student
        self.teacher = copy.deepcopy(student)
        self.teacher.requires_grad_(False)
        self.register_buffer("ema_coefficient", torch.tensor(self.base_ema_coefficient))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the student (same as :meth:`forward_student`)."""
        return self.student(*args, **kwargs)

    def forward_student(self, *args: Any, **kwargs: Any) -> Any:
        """Run the student."""
        return self.student(*args, **kwargs)

    @torch.no_grad()
    def forward_teacher(self, *args: Any, **kwargs: Any) -> Any:
        """Run the teacher under ``torch.no_grad``."""
        return self.teacher(*args, **kwargs)

    @torch.no_grad()
    def update_teacher(self, progress: float) -> float:
        """Set the coefficient for ``progress`` and apply one EMA update to the teacher.

        Args:
            progress: Fraction of training done, in ``[0, 1]``.

        Returns:
            The coefficient ``c`` used (``teacher = c * teacher + (1 - c) * student``).
        """
        coefficient = ema_coefficient(
            progress, self.base_ema_coefficient, self.final_ema_coefficient
        )
        self.ema_coefficient.fill_(coefficient)
        if coefficient == 1.0:
            return coefficient
        teacher_params = list(self.teacher.parameters())
        student_params = [p.detach() for p in self.student.parameters()]
        if teacher_params:
            torch._foreach_lerp_(teacher_params, student_params, 1.0 - coefficient)
        floating_t, floating_s = [], []
        for t, s in zip(self.teacher.buffers(), self.student.buffers(), strict=True):
            if t.is_floating_point():
                floating_t.append(t)
                floating_s.append(s.detach())
            else:
                t.copy_(s)
        if floating_t:
            torch._foreach_lerp_(floating_t, floating_s, 1.0 - coefficient)
        return coefficient
