"""Pieces shared by the distillation losses (DINO, iBOT, SwAV): schedules and cross-view CE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


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
