"""SwAV's swapped-prediction loss with Sinkhorn-Knopp codes (Caron et al., NeurIPS 2020)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ssl_losses._checks import check_positive, check_views, compute_dtype
from ssl_losses._distill import cross_view_cross_entropy
from ssl_losses._reduce import global_mean
from ssl_losses.distributed import all_reduce_sum, is_distributed

__all__ = ["SwAVLoss", "sinkhorn_knopp"]


def _check_iterations(owner: str, iterations: object) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(
            f"{owner}: sinkhorn_iterations must be an integer >= 1, got {iterations!r}; SwAV uses 3"
        )
    return iterations


@torch.no_grad()
def sinkhorn_knopp(
    scores: torch.Tensor,
    iterations: int = 3,
    epsilon: float = 0.05,
    group: Any = None,
    gather_distributed: bool = True,
) -> torch.Tensor:
    """Soft codes of the official SwAV ``distributed_sinkhorn``, over the global batch.

    ``Q = exp(scores / epsilon)`` (``[B, K]``, one or more views stacked as ``[V, B, K]`` and
    handled independently), scaled to sum 1, then ``iterations`` rounds of: every prototype's
    total weight ``1/K`` (sums over the samples of all ranks), every sample's ``1/B_global``;
    returned times ``B_global`` so each row is an assignment summing to 1. The scores are shifted
    by their global maximum first, which cancels in the first normalisation and keeps ``exp``
    finite for unnormalised scores.

    Args:
        scores: ``[B, K]`` or ``[V, B, K]`` prototype scores of this rank's samples.
        iterations: Sinkhorn iterations (>= 1; SwAV uses 3).
        epsilon: Entropic regularisation (> 0; SwAV uses 0.05).
        group: Process group; ``None`` is the world group.
        gather_distributed: Use the samples of every rank (the official code) when distributed.

    Returns:
        Codes of the same shape as ``scores``, without gradient.
    """
    check_positive("sinkhorn_knopp", "epsilon", epsilon)
    _check_iterations("sinkhorn_knopp", iterations)
    if not isinstance(scores, torch.Tensor) or scores.dim() not in (2, 3):
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"sinkhorn_knopp: scores must be a tensor [B, K] or [V, B, K], got {got}")
    squeeze = scores.dim() == 2
    q = scores.detach().unsqueeze(0) if squeeze else scores.detach()  # [V, B, K]
    distributed = gather_distributed and is_distributed(group)
    b, k = q.shape[1:]
    peak = q.amax(dim=(1, 2), keepdim=True)
    if distributed:
        dist.all_reduce(peak, op=dist.ReduceOp.MAX, group=group)
    q = (q - peak).div_(epsilon).exp_()
    total = q.sum(dim=(1, 2), keepdim=True)
    b_global = q.new_tensor(float(b))
    if distributed:
        packed = all_reduce_sum(torch.cat([total.flatten(), b_global.view(1)]), group)
        total, b_global = packed[:-1].view_as(total), packed[-1]
    q /= total
    for _ in range(iterations):
        # The official two divisions (by the sums, then by K or B) in one pass over q.
        per_prototype = q.sum(dim=1, keepdim=True)  # [V, 1, K]
        if distributed:
            per_prototype = all_reduce_sum(per_prototype, group)
        q /= per_prototype * k
        q /= q.sum(dim=2, keepdim=True) * b_global
    q *= b_global
    return q.squeeze(0) if squeeze else q


class SwAVLoss(nn.Module):
    """SwAV loss as the official code (facebookresearch/swav ``main_swav.py``).

    Codes ``q_i = sinkhorn(z_i)`` come from the high-resolution views only (the official
    ``crops_for_assign``), without gradient; each view's code predicts every other view's scores::

        p_v  = log softmax(z_v / temperature)
        loss = mean_i 1/(V-1) sum_{v != i} mean_n -sum_k q_i[n, k] p_v[n, k]

    over the ``V`` high- plus low-resolution views. With ``queue_scores``, view ``i``'s queue
    scores are prepended to its batch for Sinkhorn-Knopp and only the batch's codes are kept.
    Under ``torch.distributed`` the Sinkhorn sums run over the samples of every rank and the value
    is the mean over the global batch (gradient convention of :mod:`ssl_losses.distributed`).
    Normalising and freezing the prototypes is the caller's job, as in the official training loop.

    Args:
        temperature: Softmax temperature of the predictions (SwAV: 0.1).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (SwAV: 3).
        sinkhorn_epsilon: Entropic regularisation of Sinkhorn-Knopp (SwAV: 0.05).
        gather_distributed: Sinkhorn over the global batch and global mean when distributed.
        group: Process group; ``None`` is the world group.

    Example:
        >>> loss_fn = SwAVLoss()
        >>> high = [torch.randn(8, 30, requires_grad=True) for _ in range(2)]
        >>> low = [torch.randn(8, 30, requires_grad=True) for _ in range(4)]
        >>> loss = loss_fn(high, low)
    """

    def __init__(
        self,
        temperature: float = 0.1,
        sinkhorn_iterations: int = 3,
        sinkhorn_epsilon: float = 0.05,
        gather_distributed: bool = True,
        group: Any = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.temperature = check_positive(owner, "temperature", temperature)
        self.sinkhorn_iterations = _check_iterations(owner, sinkhorn_iterations)
        self.sinkhorn_epsilon = check_positive(owner, "sinkhorn_epsilon", sinkhorn_epsilon)
        self.gather_distributed = gather_distributed
        self.group = group

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``repr``."""
        return (
            f"temperature={self.temperature}, sinkhorn_iterations={self.sinkhorn_iterations}, "
            f"sinkhorn_epsilon={self.sinkhorn_epsilon}"
        )

    def forward(
        self,
        high_resolution_scores: list[torch.Tensor],
        low_resolution_scores: list[torch.Tensor],
        queue_scores: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            high_resolution_scores: Per high-resolution view, prototype scores ``[N, K]``.
            low_resolution_scores: Per low-resolution view, prototype scores ``[N, K]`` of the
                same samples (may be empty).
            queue_scores: Optional, per high-resolution view, the prototype scores ``[Q, K]`` of
                that view's queued features (no gradient).

        Returns:
            Scalar loss, float32 for half-precision inputs.
        """
        owner = type(self).__name__
        high = check_views(owner, "high_resolution_scores", high_resolution_scores, 2, "[N, K]")
        low = check_views(
            owner, "low_resolution_scores", low_resolution_scores, 2, "[N, K]", allow_empty=True
        )
        n, k = high[0].shape
        if low and low[0].shape != high[0].shape:
            raise ValueError(
                f"{owner}: low-resolution views {tuple(low[0].shape)} must match the "
                f"high-resolution ones {(n, k)}: the same N samples in the same order, scored "
                "against the same prototypes"
            )
        if len(high) + len(low) < 2:
            raise ValueError(
                f"{owner}: got 1 view; each view's code predicts the other views, so pass at "
                "least two (e.g. two high-resolution views)"
            )
        if n == 0:
            raise ValueError(f"{owner}: got an empty batch; pass at least one sample per view")
        dtype = compute_dtype(*high, *low)
        scores = torch.stack([h.detach() for h in high]).to(dtype)  # [H, N, K]
        if queue_scores is not None:
            queue = self._check_queue(queue_scores, len(high), k)
            scores = torch.cat([torch.stack([q.detach() for q in queue]).to(dtype), scores], 1)
        codes = sinkhorn_knopp(
            scores,
            self.sinkhorn_iterations,
            self.sinkhorn_epsilon,
            self.group,
            self.gather_distributed,
        )[:, -n:]
        logits = [z.to(dtype) / self.temperature for z in (*high, *low)]
        per_sample, n_pairs = cross_view_cross_entropy(list(codes.unbind(0)), logits)
        loss = global_mean(per_sample.sum(), n, self.group, self.gather_distributed)
        return loss / n_pairs

    def _check_queue(self, queue_scores: object, n_high: int, k: int) -> list[torch.Tensor]:
        owner = type(self).__name__
        queue = check_views(owner, "queue_scores", queue_scores, 2, f"[Q, K={k}]")
        if len(queue) != n_high or queue[0].shape[1] != k:
            raise ValueError(
                f"{owner}: queue_scores must hold one [Q, K={k}] tensor per high-resolution view "
                f"({n_high}), got {len(queue)} of shape {tuple(queue[0].shape)}; score each "
                "view's queue against the same prototypes"
            )
        return queue
