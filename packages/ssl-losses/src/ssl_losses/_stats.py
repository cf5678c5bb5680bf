"""Shared batch-statistics kernels (internal)."""

from __future__ import annotations

import torch

from ssl_losses._checks import check_min_batch, check_pair, compute_dtype
from ssl_losses.distributed import all_gather_with_grad, is_distributed


def global_view_pair(
    owner: str,
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    gather_distributed: bool,
    group: torch.distributed.ProcessGroup | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two views, cast them to the compute dtype and gather the global batch.

    Shared prologue of the losses whose statistics are taken over the whole (global) batch
    (Barlow Twins, VICReg): under ``torch.distributed`` both views of every rank are gathered
    with an autograd-aware gather, so the statistics equal one process on the global batch.

    Returns:
        ``(z_a, z_b)`` of shape ``[n_global, d]`` in float32 (or the inputs' wider dtype).
    """
    check_pair(owner, z_a, z_b, ("z_a", "z_b"))
    dtype = compute_dtype(z_a, z_b)
    z_a, z_b = z_a.to(dtype), z_b.to(dtype)
    if gather_distributed and is_distributed(group):
        d = z_a.shape[1]
        both = all_gather_with_grad(torch.cat([z_a, z_b], dim=1), group)
        z_a, z_b = both[:, :d], both[:, d:]
    check_min_batch(owner, z_a.shape[0], 2)
    return z_a, z_b


def sum_sq_cross_product(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return ``||x.T @ y||_F^2`` for ``x, y`` of shape ``[n, d]``, avoiding ``d x d`` if n < d.

    ``sum_ij (x.T y)_ij^2 = sum_nm (x x.T)_nm (y y.T)_nm``: the Gram form costs ``O(n^2 d)``
    instead of ``O(n d^2)``, which is ~30x fewer FLOPs at n=256, d=8192 (see
    ``benchmarks/losses.py``). Both forms are exact; we pick the cheaper one.
    """
    n, d = x.shape
    if n < d:
        gx = x @ x.T
        gy = gx if y is x else y @ y.T
        return (gx * gy).sum()
    c = x.T @ y
    return c.pow(2).sum()
