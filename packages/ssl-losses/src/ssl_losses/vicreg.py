"""VICReg: variance-invariance-covariance regularisation (Bardes, Ponce & LeCun, ICLR 2022)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_losses._checks import (
    check_non_negative,
    check_positive,
)
from ssl_losses._stats import global_view_pair, sum_sq_cross_product

__all__ = ["VICRegLoss"]

_VARIANCE_FORMS = ("official", "paper")


class VICRegLoss(nn.Module):
    """VICReg loss as the official code computes it (Bardes et al. 2022, facebookresearch/vicreg).

    With ``Z, Z'`` of shape ``[n, d]`` (the global batch under ``torch.distributed``)::

        s(Z, Z') = mean_{i,k} (z_ik - z'_ik)^2                       # F.mse_loss
        v(Z)     = 1/d sum_k max(0, 1 - sqrt(Var(z_.k) + eps))        # unbiased variance
        c(Z)     = 1/d sum_{k != l} C(Z)_kl^2,  C(Z) = 1/(n-1) sum_i (z_i - mean)(z_i - mean)^T
        loss     = sim_weight * s + var_weight * (v(Z) + v(Z')) / 2 + cov_weight * (c(Z) + c(Z'))

    The paper's eq. (6) writes the variance term as ``mu * [v(Z) + v(Z')]``; the official code,
    which produced every published number with ``mu = 25``, halves each view's hinge
    (``mean(relu(1 - std)) / 2``), so the default here is ``mu / 2`` in the paper's notation.
    ``variance_form="paper"`` gives the equation literally (twice the variance weight). Under
    ``torch.distributed`` both views are gathered with gradients and every statistic is taken
    over the global batch.

    Args:
        sim_weight: Weight ``lambda`` of the invariance term (>= 0).
        var_weight: Weight ``mu`` of the variance hinge (>= 0).
        cov_weight: Weight ``nu`` of the covariance term (>= 0).
        eps: Added to the variance inside the square root (> 0), keeps the gradient finite;
            1e-4 as the official code.
        gather_distributed: Use the global batch when running distributed.
        group: Process group to gather over; ``None`` is the world group.
        variance_form: ``"official"`` (default, each view's hinge halved as the official code)
            or ``"paper"`` (eq. 6 literally: the two hinges summed).

    Example:
        >>> loss_fn = VICRegLoss()
        >>> z_a, z_b = torch.randn(32, 64), torch.randn(32, 64)
        >>> loss = loss_fn(z_a, z_b)
    """

    def __init__(
        self,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        eps: float = 1e-4,
        gather_distributed: bool = True,
        group: Any = None,
        variance_form: str = "official",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.sim_weight = check_non_negative(owner, "sim_weight", sim_weight)
        self.var_weight = check_non_negative(owner, "var_weight", var_weight)
        self.cov_weight = check_non_negative(owner, "cov_weight", cov_weight)
        self.eps = check_positive(owner, "eps", eps)
        self.gather_distributed = gather_distributed
        self.group = group
        if variance_form not in _VARIANCE_FORMS:
            raise ValueError(
                f"{owner}: variance_form must be 'official' (each view's std hinge halved, as "
                f"facebookresearch/vicreg) or 'paper' (eq. 6 literally), got {variance_form!r}"
            )
        self.variance_form = variance_form

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``repr``."""
        return (
            f"sim_weight={self.sim_weight}, var_weight={self.var_weight}, "
            f"cov_weight={self.cov_weight}, eps={self.eps}, variance_form={self.variance_form!r}"
        )

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
        n, d = z_a.shape
        loss = self.sim_weight * F.mse_loss(z_a, z_b)
        # The official code halves each view's std hinge; eq. (6) of the paper does not.
        var_weight = self.var_weight * (0.5 if self.variance_form == "official" else 1.0)
        for z in (z_a, z_b):
            x = z - z.mean(dim=0)
            var = x.pow(2).sum(dim=0) / (n - 1)
            std_hinge = F.relu(1.0 - torch.sqrt(var + self.eps)).mean()
            # sum_{k != l} C_kl^2 = ||C||_F^2 - sum_k C_kk^2, and C_kk = var_k.
            off_diag = sum_sq_cross_product(x, x) / (n - 1) ** 2 - var.pow(2).sum()
            loss = loss + var_weight * std_hinge + self.cov_weight * off_diag / d
        return loss
