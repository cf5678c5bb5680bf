"""Contrastive losses with cosine similarity: InfoNCE and SimCLR's NT-Xent.

Under ``torch.distributed`` (world size > 1) candidates are gathered from every rank with
:func:`ssl_losses.distributed.all_gather_with_grad`; each rank scores only its *own* anchors against
all candidates (``1/world_size`` of the work), and the returned value is the global mean over the
anchors of all ranks. The gradient convention is that of :mod:`ssl_losses.distributed`: after
DDP's gradient averaging, parameter gradients equal the single-process gradient on the global batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ssl_losses._checks import (
    NORM_EPS,
    check_embedding,
    check_pair,
    check_positive,
    compute_dtype,
)
from ssl_losses._reduce import global_mean
from ssl_losses.distributed import (
    all_gather_with_grad,
    gather_sizes,
    get_rank,
    is_distributed,
)

__all__ = ["InfoNCELoss", "NTXEntLoss"]


class InfoNCELoss(nn.Module):
    """InfoNCE with cosine similarity: mean over anchors of ``-log softmax(cos(a, c) / t)[pos]``.

    Each anchor is scored against every candidate; ``positive_idx[i]`` says which candidate is the
    positive of anchor ``i``. Under ``torch.distributed`` the candidates of every rank are gathered
    (rank order) with gradients, ``positive_idx`` is shifted by the number of candidates on lower
    ranks, and the loss is the mean over the anchors of all ranks.

    Args:
        temperature: Softmax temperature ``t > 0``.
        gather_distributed: Gather candidates from all ranks when running distributed.
        group: Process group to gather over; ``None`` is the world group.

    Example:
        >>> loss_fn = InfoNCELoss(temperature=0.1)
        >>> a, c = torch.randn(8, 16), torch.randn(32, 16)
        >>> loss = loss_fn(a, c, torch.arange(8))  # candidate i is the positive of anchor i
    """

    def __init__(
        self, temperature: float = 0.1, gather_distributed: bool = True, group: Any = None
    ) -> None:
        super().__init__()
        self.temperature = check_positive(type(self).__name__, "temperature", temperature)
        self.gather_distributed = gather_distributed
        self.group = group

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``repr``."""
        return f"temperature={self.temperature}"

    def forward(
        self,
        anchors: torch.Tensor,
        candidates: torch.Tensor,
        positive_idx: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Compute the loss.

        Args:
            anchors: ``[A, d]`` this rank's anchors.
            candidates: ``[C, d]`` this rank's candidates (positives and negatives).
            positive_idx: ``[A]`` integer index into this rank's ``candidates``.
            mask: Optional boolean ``[A, C_total]``; ``True`` excludes that candidate for that
                anchor (e.g. other views of the same sample). ``C_total`` is the number of
                gathered candidates of all ranks (``C`` in a single process), in rank order.
                Never mask an anchor's positive.

        Returns:
            Scalar loss, float32 for half-precision inputs.
        """
        owner = type(self).__name__
        check_embedding(owner, "anchors", anchors)
        check_embedding(owner, "candidates", candidates)
        if anchors.shape[1] != candidates.shape[1]:
            raise ValueError(
                f"{owner}: anchors {tuple(anchors.shape)} and candidates "
                f"{tuple(candidates.shape)} must have the same embedding dimension; project "
                "both with the same head"
            )
        if (
            not isinstance(positive_idx, torch.Tensor)
            or positive_idx.dim() != 1
            or positive_idx.shape[0] != anchors.shape[0]
            or positive_idx.is_floating_point()
            or positive_idx.dtype == torch.bool
        ):
            got = tuple(positive_idx.shape) if isinstance(positive_idx, torch.Tensor) else "?"
            raise ValueError(
                f"{owner}: positive_idx must be an integer tensor of shape [A]=[{anchors.shape[0]}]"
                f" (one candidate index per anchor), got {got}; e.g. torch.arange(A)"
            )
        if anchors.shape[0] == 0 or candidates.shape[0] == 0:
            raise ValueError(
                f"{owner}: got {anchors.shape[0]} anchors and {candidates.shape[0]} candidates; "
                "both need at least one row"
            )
        dtype = compute_dtype(anchors, candidates)
        a = F.normalize(anchors.to(dtype), dim=1, eps=NORM_EPS) / self.temperature
        c = F.normalize(candidates.to(dtype), dim=1, eps=NORM_EPS)
        target = positive_idx.long()
        if self.gather_distributed and is_distributed(self.group):
            sizes = gather_sizes(c.shape[0], c.device, self.group)
            c = all_gather_with_grad(c, self.group, sizes)
            target = target + sum(sizes[: get_rank(self.group)])
        logits = a @ c.T
        if mask is not None:
            if mask.shape != logits.shape or mask.dtype != torch.bool:
                raise ValueError(
                    f"{owner}: mask must be a bool tensor of shape [A, C_total]="
                    f"{list(logits.shape)} (C_total counts the candidates of all ranks), got "
                    f"{mask.dtype} {tuple(mask.shape)}"
                )
            logits = logits.masked_fill(mask, float("-inf"))
        local_sum = F.cross_entropy(logits, target, reduction="sum")
        return global_mean(local_sum, anchors.shape[0], self.group)


class NTXEntLoss(nn.Module):
    """SimCLR's NT-Xent (normalised temperature-scaled cross-entropy), Chen et al. 2020.

    For ``N`` pairs the ``2N`` L2-normalised embeddings ``u`` are all anchors; anchor ``k``'s
    positive is the other view of its sample and its negatives are the ``2N - 2`` other
    embeddings (the self-pair is masked)::

        loss = 1/(2N) sum_k -log( exp(u_k.u_p(k)/t) / sum_{m != k} exp(u_k.u_m/t) )

    Under ``torch.distributed`` the negatives come from every rank (global ``N``); each rank scores
    its own ``2 N_rank`` anchors, and the returned value is the global mean.

    Args:
        temperature: Softmax temperature ``t > 0`` (SimCLR uses 0.5 at batch 256, 0.1 at 4096).
        gather_distributed: Use the negatives of all ranks when running distributed.
        group: Process group to gather over; ``None`` is the world group.

    Example:
        >>> loss_fn = NTXEntLoss(temperature=0.5)
        >>> z_i, z_j = torch.randn(8, 16), torch.randn(8, 16)  # two views, row n = sample n
        >>> loss = loss_fn(z_i, z_j)
    """

    def __init__(
        self, temperature: float = 0.5, gather_distributed: bool = True, group: Any = None
    ) -> None:
        super().__init__()
        self.temperature = check_positive(type(self).__name__, "temperature", temperature)
        self.gather_distributed = gather_distributed
        self.group = group

    def extra_repr(self) -> str:
        """Hyper-parameters shown by ``repr``."""
        return f"temperature={self.temperature}"

    def forward(self, z_i: torch.Tensor, z_j: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            z_i: ``[N, d]`` first view; row ``n`` is sample ``n``.
            z_j: ``[N, d]`` second view of the same samples.

        Returns:
            Scalar loss, float32 for half-precision inputs.
        """
        check_pair(type(self).__name__, z_i, z_j, ("z_i", "z_j"))
        n = z_i.shape[0]
        if n == 0:
            raise ValueError(f"{type(self).__name__}: got an empty batch; pass at least one pair")
        dtype = compute_dtype(z_i, z_j)
        u = F.normalize(torch.cat([z_i, z_j]).to(dtype), dim=1, eps=NORM_EPS)  # [2n, d]
        candidates, offset = u, 0
        if self.gather_distributed and is_distributed(self.group):
            # Rank-major layout [rank0: view i, view j | rank1: view i, view j | ...]: one gather.
            sizes = gather_sizes(2 * n, u.device, self.group)
            candidates = all_gather_with_grad(u, self.group, sizes)
            offset = sum(sizes[: get_rank(self.group)])
        # A hand-written backward exploiting the symmetry of u @ u.T (one matmul instead of two)
        # was slower on CPU than this autograd version (transpose-add, extra passes): not kept.
        logits = (u / self.temperature) @ candidates.T  # [2n, 2N]
        logits.diagonal(offset).fill_(float("-inf"))  # self-pairs (rows k, column offset + k)
        arange = torch.arange(2 * n, device=u.device)
        target = offset + (arange + n) % (2 * n)
        local_sum = F.cross_entropy(logits, target, reduction="sum")
        return global_mean(local_sum, 2 * n, self.group)
