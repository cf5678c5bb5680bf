"""Shared batch-statistics kernels (internal)."""

from __future__ import annotations

import torch


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
