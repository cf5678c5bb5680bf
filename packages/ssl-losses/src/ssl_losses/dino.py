"""DINO's self-distillation loss with a centred, sharpened teacher (Caron et al., ICCV 2021)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ssl_losses._checks import check_views, compute_dtype
from ssl_losses._distill import (
    CenteredDistillation,
    cross_view_cross_entropy,
)
from ssl_losses._reduce import global_mean, global_row_mean

__all__ = ["DINOLoss"]


class DINOLoss(CenteredDistillation):
    """DINO loss as the official code (facebookresearch/dino ``main_dino.py`` ``DINOLoss``).

    For teacher logits ``t_i`` (global views) and student logits ``s_v`` (global views first,
    then local views)::

        q_i  = softmax((t_i - center) / teacher_temp(epoch))             # no gradient
        p_v  = log_softmax(s_v / student_temp)
        loss = mean over pairs (i, v) with v != i of  mean_n -sum_k q_i[n, k] p_v[n, k]

    then ``center <- m * center + (1 - m) * mean(t)`` with the mean over every teacher view and
    sample of the global batch (all-reduced under ``torch.distributed``). The teacher temperature
    rises linearly from ``warmup_teacher_temp`` to ``teacher_temp`` over the first
    ``warmup_teacher_temp_epochs`` epochs (``np.linspace`` as the official schedule), then stays.
    Under ``torch.distributed`` the value is the mean over the global batch and the gradient
    follows :mod:`ssl_losses.distributed`.

    Args:
        out_dim: Number of logits ``K`` (the DINO head's output dimension).
        teacher_temp: Teacher temperature after the warm-up.
        warmup_teacher_temp: Teacher temperature at epoch 0.
        warmup_teacher_temp_epochs: Length of the linear warm-up in epochs (0: none).
        student_temp: Student temperature.
        center_momentum: EMA momentum of the centre, in ``[0, 1]``.
        gather_distributed: All-reduce the centre's batch mean and the loss when distributed.
        group: Process group; ``None`` is the world group.

    Example:
        >>> loss_fn = DINOLoss(out_dim=16, warmup_teacher_temp_epochs=10)
        >>> teacher = [torch.randn(4, 16) for _ in range(2)]  # global views
        >>> student = [torch.randn(4, 16, requires_grad=True) for _ in range(5)]  # 2 + 3 local
        >>> loss = loss_fn(student, teacher, epoch=0)
        >>> loss.backward()
    """

    def __init__(
        self,
        out_dim: int,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_epochs: int = 0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        gather_distributed: bool = True,
        group: Any = None,
    ) -> None:
        super().__init__(
            out_dim,
            teacher_temp,
            warmup_teacher_temp,
            warmup_teacher_temp_epochs,
            student_temp,
            center_momentum,
            gather_distributed,
            group,
            center_shape=(1,),
            what="the head's output size",
        )

    def forward(
        self, student_out: list[torch.Tensor], teacher_out: list[torch.Tensor], epoch: int = 0
    ) -> torch.Tensor:
        """Compute the loss and update the centre.

        Args:
            student_out: Per-view student logits ``[N, K]``; ``student_out[i]`` for
                ``i < len(teacher_out)`` is the same global view as ``teacher_out[i]`` (that pair
                is skipped), the rest are local views.
            teacher_out: Per-global-view teacher logits ``[N, K]`` (detached here).
            epoch: Current epoch, for the teacher-temperature warm-up.

        Returns:
            Scalar loss, float32 for half-precision inputs.
        """
        owner = type(self).__name__
        temp = self.teacher_temperature(epoch)
        layout = f"[N, out_dim={self.out_dim}]"
        students = check_views(owner, "student_out", student_out, 2, layout)
        teachers = check_views(owner, "teacher_out", teacher_out, 2, layout)
        if teachers[0].shape != students[0].shape or teachers[0].shape[1] != self.out_dim:
            raise ValueError(
                f"{owner}: student and teacher views must all be {layout} with the same N, got "
                f"student {tuple(students[0].shape)} and teacher {tuple(teachers[0].shape)}; "
                "set out_dim to the head's output size and pass the same samples to both"
            )
        if len(students) < len(teachers) or len(students) < 2:
            raise ValueError(
                f"{owner}: got {len(students)} student and {len(teachers)} teacher views; the "
                "student needs every teacher view (same order) plus at least one other view, so "
                "that some pair of different views exists"
            )
        n = students[0].shape[0]
        if n == 0:
            raise ValueError(f"{owner}: got an empty batch; pass at least one sample per view")
        dtype = compute_dtype(*students, *teachers)
        t = torch.stack([v.detach() for v in teachers]).to(dtype)  # [T, N, K]
        center = self.center.to(dtype)
        q = F.softmax((t - center) / temp, dim=-1).unbind(0)
        logits = [s.to(dtype) / self.student_temp for s in students]
        per_sample, n_pairs = cross_view_cross_entropy(list(q), logits)
        loss = global_mean(per_sample.sum(), n, self.group, self.gather_distributed)
        self._update_center(t.flatten(0, 1))
        return loss / n_pairs

    @torch.no_grad()
    def _update_center(self, teacher_rows: torch.Tensor) -> None:
        batch_center = global_row_mean(teacher_rows, self.group, self.gather_distributed)
        m = self.center_momentum
        self.center.mul_(m).add_(batch_center.to(self.center.dtype), alpha=1.0 - m)
