"""MoCo v3's symmetrised contrastive loss against momentum keys (Chen, Xie & He, ICCV 2021)."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ssl_losses._checks import NORM_EPS, check_pair, check_positive, compute_dtype
from ssl_losses._reduce import global_mean
from ssl_losses.distributed import gather_sizes, get_rank, is_distributed

__all__ = ["MoCoV3Loss"]


class MoCoV3Loss(nn.Module):
    """MoCo v3 loss as the official code (facebookresearch/moco-v3 ``moco/builder.py``).

    ``loss = ctr(q1, k2) + ctr(q2, k1)`` with::

        logits    = normalize(q) @ normalize(K).T / temperature
        ctr(q, k) = 2 * temperature * mean_n -log softmax(logits)[n, offset + n]

    where ``K`` holds the keys ``k`` of every rank (gathered, rank order; ``offset`` counts the
    keys of lower ranks), so the positive of query ``n`` is its own sample's key. Keys get no
    gradient (they are the momentum encoder's output). The value is the mean over the global
    batch (gradient convention of :mod:`ssl_losses.distributed`); ``2 * temperature`` is the
    official code's factor.

    Args:
        temperature: Softmax temperature (MoCo v3: 0.2 for ViT, 1.0 for ResNet).
        gather_distributed: Use the keys of every rank when distributed.
        group: Process group; ``None`` is the world group.

    Example:
        >>> loss_fn = MoCoV3Loss(temperature=0.2)
        >>> q1, q2 = torch.randn(8, 32, requires_grad=True), torch.randn(8, 32, requires_grad=True)
        >>> k1, k2 = torch.randn(8, 32), torch.randn(8, 32)  # momentum encoder, no gradient
        >>> loss = loss_fn(q1, q2, k1, k2)
    """

    def __init__(
        self, temperature: float = 0.2, gather_distributed: bool = True, group: Any = None
    ) -> None:
        super().__init__()
        self.temperature = check_positive(type(self).__name__, "temperature", temperature)
        self.gather_distributed = gather_distributed
        self.group = group

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``repr``."""
        return f"temperature={self.temperature}"

    def forward(
        self, q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            q1: ``[N, d]`` predictor outputs (queries) of view 1.
            q2: ``[N, d]`` queries of view 2.
            k1: ``[N, d]`` momentum-encoder outputs (keys) of view 1; detached here.
            k2: ``[N, d]`` keys of view 2; detached here.

        Returns:
            Scalar loss, float32 for half-precision inputs.
        """
        owner = type(self).__name__
        check_pair(owner, q1, q2, ("q1", "q2"))
        check_pair(owner, k1, k2, ("k1", "k2"))
        check_pair(owner, q1, k1, ("q1", "k1"))
        n, d = q1.shape
        if n == 0:
            raise ValueError(f"{owner}: got an empty batch; pass at least one query per view")
        dtype = compute_dtype(q1, q2, k1, k2)
        keys = F.normalize(
            torch.cat([k1.detach(), k2.detach()], 1).to(dtype).view(n, 2, d), dim=2, eps=NORM_EPS
        )
        offset = 0
        if self.gather_distributed and is_distributed(self.group):
            sizes = gather_sizes(n, keys.device, self.group)
            keys = _gather_rows(keys.reshape(n, 2 * d), sizes, self.group).view(-1, 2, d)
            offset = sum(sizes[: get_rank(self.group)])
        target = torch.arange(n, device=q1.device) + offset
        local_sum = q1.new_zeros((), dtype=dtype)
        for q, k in ((q2, keys[:, 0]), (q1, keys[:, 1])):
            logits = F.normalize(q.to(dtype), dim=1, eps=NORM_EPS) @ k.T / self.temperature
            local_sum = local_sum + F.cross_entropy(logits, target, reduction="sum")
        loss = global_mean(local_sum, n, self.group, self.gather_distributed)
        return loss * (2.0 * self.temperature)


def _gather_rows(t: torch.Tensor, sizes: list[int], group: Any) -> torch.Tensor:
    """All-gather ``t`` along dim 0 without gradient; ranks may hold different row counts."""
    longest = max(sizes)
    padded = t.new_zeros((longest, *t.shape[1:]))
    padded[: t.shape[0]] = t
    chunks = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded.contiguous(), group=group)
    return torch.cat([c[:s] for c, s in zip(chunks, sizes, strict=True)])
