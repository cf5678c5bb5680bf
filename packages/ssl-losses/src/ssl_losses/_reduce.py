"""Global means over the batches of all ranks (internal)."""

from __future__ import annotations

from typing import Any

import torch

from ssl_losses.distributed import all_reduce_sum, get_world_size, is_distributed


def global_mean(
    local_sum: torch.Tensor, local_count: int, group: Any, enabled: bool = True
) -> torch.Tensor:
    """Turn this rank's summed per-sample losses into the global mean over all ranks' samples.

    The value is ``sum_r S_r / sum_r n_r`` on every rank. The differentiable part is
    ``world_size * S_r / sum_r n_r``: the gradient reaching this rank's inputs is then
    ``world_size * dL/d(local inputs)``, the convention of :mod:`ssl_losses.distributed`, so DDP's
    gradient averaging gives the single-process gradient on the global batch (also for uneven
    per-rank batches). ``enabled=False`` gives this rank's mean.
    """
    if not (enabled and is_distributed(group)):
        return local_sum / local_count
    totals = all_reduce_sum(
        torch.stack([local_sum.detach(), local_sum.new_tensor(float(local_count))]), group
    )
    scaled = local_sum * (get_world_size(group) / totals[1])
    return scaled + (totals[0] / totals[1] - scaled).detach()


@torch.no_grad()
def global_row_mean(rows: torch.Tensor, group: Any, enabled: bool = True) -> torch.Tensor:
    """Mean over dim 0 of ``rows`` across the rows of every rank (no gradient), keeping dim 0.

    Args:
        rows: ``[n_rank, ...]``.
        group: Process group; ``None`` is the world group.
        enabled: All-reduce when running distributed; ``False`` gives this rank's mean.

    Returns:
        ``[1, ...]``: ``sum_r sum_i rows_r[i] / sum_r n_r``.
    """
    total = rows.sum(dim=0, keepdim=True)
    count = rows.new_tensor([float(rows.shape[0])])
    if enabled and is_distributed(group):
        packed = all_reduce_sum(torch.cat([total.flatten(), count]), group)
        total, count = packed[:-1].view_as(total), packed[-1:]
    return total / count
