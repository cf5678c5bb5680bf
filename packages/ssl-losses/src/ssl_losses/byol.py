"""Per-sample cosine losses for predictor/target methods (BYOL, SimSiam)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_losses._checks import NORM_EPS, check_pair, compute_dtype

__all__ = ["BYOLLoss", "NegativeCosineSimilarity"]


def _cosine(p: torch.Tensor, z: torch.Tensor, owner: str) -> torch.Tensor:
    check_pair(owner, p, z, ("p", "z"))
    if p.shape[0] == 0:
        raise ValueError(f"{owner}: got an empty batch; pass at least one row")
    dtype = compute_dtype(p, z)
    p = F.normalize(p.to(dtype), dim=1, eps=NORM_EPS)
    z = F.normalize(z.to(dtype), dim=1, eps=NORM_EPS)
    return (p * z).sum(dim=1)


class BYOLLoss(nn.Module):
    """BYOL's regression loss ``mean_i (2 - 2 cos(p_i, z_i))`` (Grill et al. 2020).

    The target ``z`` is **not** detached here: pass ``z.detach()`` (or compute it under
    ``torch.no_grad()``, as an EMA teacher does) so no gradient reaches the target branch.
    The loss is a per-sample mean, so under DDP the averaged gradient is already that of the
    global batch (equal per-rank batch sizes); no gather is needed. Symmetrise yourself:
    ``loss_fn(p1, z2.detach()) + loss_fn(p2, z1.detach())``.

    Example:
        >>> p, z = torch.randn(8, 32, requires_grad=True), torch.randn(8, 32)
        >>> loss = BYOLLoss()(p, z.detach())
    """

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            p: ``[n, d]`` online predictions.
            z: ``[n, d]`` targets (detach them yourself).

        Returns:
            Scalar loss in ``[0, 4]``, float32 for half-precision inputs.
        """
        return (2.0 - 2.0 * _cosine(p, z, type(self).__name__)).mean()


class NegativeCosineSimilarity(nn.Module):
    """``-mean_i cos(p_i, z_i)``, SimSiam's loss (Chen & He 2021).

    As with :class:`BYOLLoss`, the caller detaches ``z`` (SimSiam's stop-gradient).

    Example:
        >>> p, z = torch.randn(8, 32, requires_grad=True), torch.randn(8, 32)
        >>> loss = NegativeCosineSimilarity()(p, z.detach())
    """

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            p: ``[n, d]`` predictions.
            z: ``[n, d]`` targets (detach them yourself).

        Returns:
            Scalar loss in ``[-1, 1]``, float32 for half-precision inputs.
        """
        return -_cosine(p, z, type(self).__name__).mean()
