"""Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny, ICML 2021)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ssl_losses._checks import (
    check_non_negative,
    check_positive,
)
from ssl_losses._stats import global_view_pair, sum_sq_cross_product

__all__ = ["BarlowTwinsLoss"]


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins: push the cross-correlation of batch-standardised views to the identity.

    Each view is standardised per dimension over the batch, ``(z - mean) / sqrt(var + eps)`` with
    the biased variance (what the official code's ``BatchNorm1d(affine=False)`` does), then
    ``C = z_a_std.T @ z_b_std / n`` and::

        loss = sum_i (1 - C_ii)^2 + lambda_ * sum_{i != j} C_ij^2

    The ``d x d`` matrix ``C`` is never formed when ``n < d`` (see ``ssl_losses._stats``). Under
    ``torch.distributed`` both views are gathered with gradients, so mean, variance and ``C`` are
    those of the global batch.

    Args:
        lambda_: Weight of the off-diagonal (redundancy-reduction) term (>= 0).
        eps: Added to the variance before the square root (> 0).
        gather_distributed: Use the global batch when running distributed.
        group: Process group to gather over; ``None`` is the world group.

    Example:
        >>> loss_fn = BarlowTwinsLoss(lambda_=0.005)
        >>> z_a, z_b = torch.randn(32, 64), torch.randn(32, 64)
        >>> loss = loss_fn(z_a, z_b)
    """

    def __init__(
        self,
        lambda_: float = 0.005,
        eps: float = 1e-5,
        gather_distributed: bool = True,
        group: Any = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.lambda_ = check_non_negative(owner, "lambda_", lambda_)
        self.eps = check_positive(owner, "eps", eps)
        self.gather_distributed = gather_distributed
        self.group = group

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``repr``."""
        return f"lambda_={self.lambda_}, eps={self.eps}"

    def _standardise(self, z: torch.Tensor) -> torch.Tensor:
        x = z - z.mean(dim=0)
        return x * torch.rsqrt(x.pow(2).mean(dim=0) + self.eps)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            z_a: ``[n, d]`` embeddings of the first view.
            z_b: ``[n, d]`` embeddings of the second view (row i = same sample as in ``z_a``).

        Returns:
            Scalar loss, float32 for half-precision inputs.
        """
        z_a, z_b = global_view_pair(
            type(self).__name__, z_a, z_b, self.gather_distributed, self.group
        )
        n = z_a.shape[0]
        a, b = self._standardise(z_a), self._standardise(z_b)
        diag = (a * b).sum(dim=0) / n
        on_diag = (1.0 - diag).pow(2).sum()
        # sum_{i != j} C_ij^2 = ||C||_F^2 - sum_i C_ii^2
        off_diag = sum_sq_cross_product(a, b) / n**2 - diag.pow(2).sum()
        return on_diag + self.lambda_ * off_diag
