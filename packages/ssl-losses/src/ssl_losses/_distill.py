"""Pieces shared by the distillation losses (DINO, iBOT, SwAV): schedules and cross-view CE."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_losses._checks import check_positive


def check_epoch(owner: str, epoch: object) -> int:
    """Return ``epoch`` as an int, or raise ValueError if it is not a non-negative integer."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(
            f"{owner}: epoch must be an integer >= 0 (the current training epoch), got {epoch!r}"
        )
    return epoch


def check_warmup_epochs(owner: str, value: object) -> int:
    """Return the warm-up length, or raise ValueError if it is not an integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"{owner}: warmup_teacher_temp_epochs must be an integer >= 0, got {value!r}; "
            "use 0 for no warm-up"
        )
    return value


def warmup_temperature(epoch: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """Teacher temperature at ``epoch``: the official DINO/iBOT schedule.

    ``np.linspace(warmup_temp, temp, warmup_epochs)`` for the first ``warmup_epochs`` epochs (so
    epoch ``warmup_epochs - 1`` already uses ``temp``), then ``temp``.
    """
    if epoch >= warmup_epochs:
        return temp
    if warmup_epochs == 1:
        return warmup_temp
    return warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1)


def check_momentum(owner: str, value: float) -> float:
    """Return the centre momentum, or raise ValueError if it is outside [0, 1]."""
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{owner}: center_momentum must be in [0, 1] (the EMA keeps this fraction of the old "
            f"centre), got {value}; DINO uses 0.9"
        )
    return value


def cross_view_cross_entropy(
    targets: list[torch.Tensor], logits: list[torch.Tensor]
) -> tuple[torch.Tensor, int]:
    """Sum of ``-sum_k q_t log softmax(s_v)`` over every pair of target ``t`` and view ``v != t``.

    Target ``t`` and view ``t`` are the same view (skipped, as DINO and SwAV do); the views past
    ``len(targets)`` pair with every target. Rather than one ``log_softmax`` per pair as the
    official loops, each view's ``log_softmax`` is taken once against the sum of the targets it
    pairs with (the same value: cross-entropy is linear in the target).

    Args:
        targets: ``T`` target distributions ``[..., K]`` (no gradient).
        logits: ``V >= T`` student logits ``[..., K]`` already divided by their temperature.

    Returns:
        ``(per_sample, n_pairs)``: the per-sample sum over pairs ``[...]`` and the pair count.
    """
    total = targets[0]
    for t in targets[1:]:
        total = total + t
    per_sample = None
    for v, s in enumerate(logits):
        weight = total - targets[v] if v < len(targets) else total
        term = (weight * F.log_softmax(s, dim=-1)).sum(-1)
        per_sample = term if per_sample is None else per_sample + term
    n_pairs = len(targets) * len(logits) - min(len(targets), len(logits))
    return -per_sample, n_pairs


class CenteredDistillation(nn.Module):
    """Shared settings of DINO's and iBOT's losses: temperatures, the schedule, the centre.

    Args:
        out_dim: Width of the head's output (the centre's last dimension).
        teacher_temp: Teacher temperature after the warm-up.
        warmup_teacher_temp: Teacher temperature at epoch 0.
        warmup_teacher_temp_epochs: Epochs of the linear warm-up.
        student_temp: Student temperature.
        center_momentum: EMA momentum of the centre.
        gather_distributed: Whether the centre's batch mean is taken over all ranks.
        group: Process group of that mean (default: the world).
        center_shape: Leading shape of the centre buffer (``(1,)`` or ``(1, 1)``).
        what: What ``out_dim`` is the width of, for the error message.
    """

    center: torch.Tensor

    def __init__(
        self,
        out_dim: int,
        teacher_temp: float,
        warmup_teacher_temp: float,
        warmup_teacher_temp_epochs: int,
        student_temp: float,
        center_momentum: float,
        gather_distributed: bool,
        group: Any,
        center_shape: tuple[int, ...],
        what: str,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if isinstance(out_dim, bool) or not isinstance(out_dim, int) or out_dim < 1:
            raise ValueError(
                f"{owner}: out_dim must be a positive integer ({what}), got {out_dim!r}"
            )
        self.out_dim = out_dim
        self.teacher_temp = check_positive(owner, "teacher_temp", teacher_temp)
        self.warmup_teacher_temp = check_positive(owner, "warmup_teacher_temp", warmup_teacher_temp)
        self.warmup_teacher_temp_epochs = check_warmup_epochs(owner, warmup_teacher_temp_epochs)
        self.student_temp = check_positive(owner, "student_temp", student_temp)
        self.center_momentum = check_momentum(owner, center_momentum)
        self.gather_distributed = gather_distributed
        self.group = group
        self.register_buffer("center", torch.zeros(*center_shape, out_dim))

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``repr``."""
        return (
            f"out_dim={self.out_dim}, teacher_temp={self.teacher_temp}, "
            f"warmup_teacher_temp={self.warmup_teacher_temp}, "
            f"warmup_teacher_temp_epochs={self.warmup_teacher_temp_epochs}, "
            f"student_temp={self.student_temp}, center_momentum={self.center_momentum}"
        )

    def teacher_temperature(self, epoch: int) -> float:
        """Teacher temperature used at ``epoch`` (the linear warm-up, then constant)."""
        epoch = check_epoch(type(self).__name__, epoch)
        return warmup_temperature(
            epoch, self.warmup_teacher_temp, self.teacher_temp, self.warmup_teacher_temp_epochs
        )
