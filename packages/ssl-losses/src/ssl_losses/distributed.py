"""Small ``torch.distributed`` helpers that degrade to a no-op in a single process.

Gradient convention (read this before mixing these helpers with your own losses):

Every loss in this package returns, on every rank, the *global* loss ``L`` computed as if one
process held the concatenated batch of all ranks. :func:`all_gather_with_grad` gathers along
dim 0 and its backward **sums** the incoming gradients of all ranks and returns this rank's slice
(the adjoint of all-gather, i.e. a reduce-scatter). Because every rank differentiates the same
``L``, the gradient reaching a rank's local inputs is ``world_size * dL/d(local inputs)``.
``DistributedDataParallel`` (and Lightning, which uses it) *averages* parameter gradients over
ranks, so the averaged parameter gradient is exactly ``dL/dtheta``: the single-process gradient on
the global batch. Peers that return ``grad[rank]`` without the sum are off by a factor of
``world_size``. If you do not use DDP-style averaging, divide by :func:`get_world_size`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_with_grad",
    "all_reduce_sum",
    "gather_sizes",
    "get_rank",
    "get_world_size",
    "is_distributed",
]


def is_distributed(group: Any = None) -> bool:
    """Return True when ``torch.distributed`` is initialised with more than one rank.

    Args:
        group: Process group; ``None`` means the default (world) group.
    """
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def get_world_size(group: Any = None) -> int:
    """Return the number of ranks in ``group``, or 1 when not running distributed.

    Args:
        group: Process group; ``None`` means the default (world) group.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(group)
    return 1


def get_rank(group: Any = None) -> int:
    """Return this process's rank in ``group``, or 0 when not running distributed.

    Args:
        group: Process group; ``None`` means the default (world) group.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(group)
    return 0


def gather_sizes(n: int, device: torch.device, group: Any = None) -> list[int]:
    """Return the dim-0 size of every rank's tensor, in rank order.

    Args:
        n: This rank's size.
        device: Device for the small communication tensor (CUDA under NCCL).
        group: Process group; ``None`` means the default (world) group.

    Returns:
        ``[n_0, n_1, ...]``; ``[n]`` when not running distributed.
    """
    world = get_world_size(group)
    if world == 1:
        return [n]
    mine = torch.tensor([n], dtype=torch.long, device=device)
    out = torch.empty(world, dtype=torch.long, device=device)
    dist.all_gather_into_tensor(out, mine, group=group)
    return [int(s) for s in out.tolist()]


def all_reduce_sum(tensor: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Return the sum of ``tensor`` over ranks, without gradient (a detached copy).

    Args:
        tensor: Any tensor with the same shape on every rank.
        group: Process group; ``None`` means the default (world) group.
    """
    out = tensor.detach().clone()
    if is_distributed(group):
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
    return out


class _AllGatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums over ranks and returns this rank's slice."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, tensor: torch.Tensor, sizes: list[int], rank: int, group: Any
    ) -> torch.Tensor:
        ctx.sizes, ctx.rank, ctx.group = sizes, rank, group
        tensor = tensor.contiguous()
        longest = max(sizes)
        if all(s == longest for s in sizes):
            out = tensor.new_empty((len(sizes) * longest, *tensor.shape[1:]))
            dist.all_gather_into_tensor(out, tensor, group=group)
            return out
        padded = tensor.new_zeros((longest, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        chunks = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(chunks, padded, group=group)
        return torch.cat([c[:s] for c, s in zip(chunks, sizes, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None, None]:  # type: ignore[override]
        # Sum of every rank's gradient w.r.t. the gathered tensor (all-reduce, which also works
        # on gloo where reduce-scatter is not available), then this rank's rows.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None, None


def all_gather_with_grad(
    tensor: torch.Tensor, group: Any = None, sizes: list[int] | None = None
) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, keeping the autograd graph.

    Ranks may hold different numbers of rows. The backward pass sums the gradients of all ranks
    and returns this rank's rows, so the gradient reaching this rank's input is
    ``world_size * dL/d(input)`` when every rank computes the same global loss ``L``; DDP's gradient
    averaging then yields the single-process gradient (see the module docstring).

    Args:
        tensor: ``[n_rank, ...]``; trailing dimensions must match across ranks.
        group: Process group; ``None`` means the default (world) group.
        sizes: Every rank's ``n_rank`` if already known (saves one collective).

    Returns:
        ``[sum(n_rank), ...]`` in rank order; ``tensor`` itself when not running distributed.

    Example:
        >>> z = torch.randn(4, 8, requires_grad=True)
        >>> all_gather_with_grad(z).shape  # single process: unchanged
        torch.Size([4, 8])
    """
    if not is_distributed(group):
        return tensor
    if sizes is None:
        sizes = gather_sizes(tensor.shape[0], tensor.device, group)
    return _AllGatherWithGrad.apply(tensor, sizes, get_rank(group), group)
