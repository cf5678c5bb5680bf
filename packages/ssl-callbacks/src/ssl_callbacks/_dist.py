"""Keeping a callback's own module identical on every rank: broadcast once, average gradients."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from lightning.pytorch import Trainer
from torch import nn


def distributed(trainer: Trainer) -> bool:
    """Whether ``trainer`` runs several processes with a live ``torch.distributed`` group."""
    return trainer.world_size > 1 and dist.is_available() and dist.is_initialized()


def broadcast_module(module: nn.Module, trainer: Trainer) -> None:
    """Copy rank 0's parameters and buffers to every rank (as DDP does when it wraps a model)."""
    if not distributed(trainer):
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(params: Iterable[nn.Parameter], rows: int, trainer: Trainer) -> None:
    """Replace each rank's gradients by the gradient of the loss on the global batch.

    Each rank's gradient is of a mean over its ``rows`` rows, so the global-batch gradient is
    ``sum_r rows_r * grad_r / sum_r rows_r``; one all-reduce carries the gradients and the row
    count together, and nothing is read back to the host.

    Args:
        params: The parameters whose ``.grad`` is averaged (same order on every rank).
        rows: Rows of this rank's batch.
        trainer: The trainer whose process group is used.
    """
    if not distributed(trainer):
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    count = torch.full((1,), float(rows), dtype=flat.dtype, device=flat.device)
    buffer = torch.cat([flat * count, count])
    dist.all_reduce(buffer)
    flat = buffer[:-1] / buffer[-1]
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
