"""NNCLR forward (Dwibedi et al., 2021): nearest neighbours from a support set as positives."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ssl_core import find_queue
from ssl_forwards._common import (
    as_scalar,
    base_outputs,
    check_stage,
    fold_training_views,
    require,
    require_hparam,
    require_image,
)

SUPPORT_SET_KEY = "nnclr_support_set"
"""Output key of the detached projections, and key of the ``OnlineQueue`` holding them."""

_NAME = "nnclr_forward"


def nearest_neighbours(
    query: torch.Tensor, support: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return each query row's nearest support row by cosine similarity, and its index.

    Args:
        query: ``[n, d]`` query vectors.
        support: ``[m, d]`` support vectors, ``m >= 1``.

    Returns:
        ``(support[idx], idx)`` with ``idx = argmax_j cos(query_i, support_j)`` (``[n, d]``
        and ``[n]``); ties go to the lowest index.

    Example:
        >>> s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
        >>> nearest_neighbours(torch.tensor([[0.1, 1.0]]), s)[1]
        tensor([1])
    """
    similarity = F.normalize(query, dim=1) @ F.normalize(support, dim=1).T
    idx = similarity.argmax(dim=1)
    return support[idx], idx


def _support_set(self: Any, size: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    try:
        support = find_queue(self, SUPPORT_SET_KEY)
    except LookupError as err:
        raise LookupError(
            f"{_NAME} reads its support set from the queue {SUPPORT_SET_KEY!r}, which no "
            f"callback of the trainer holds; add ssl_callbacks.OnlineQueue("
            f'key="{SUPPORT_SET_KEY}", queue_length={size}, dim={dim}) to '
            "Trainer(callbacks=[...])."
        ) from err
    if support.ndim != 2 or (support.shape[0] > 0 and support.shape[1] != dim):
        raise ValueError(
            f"{_NAME}: the {SUPPORT_SET_KEY!r} queue holds rows of shape "
            f"{tuple(support.shape[1:])}, expected ({dim},) = hparams.projection_dim; build it as "
            f'ssl_callbacks.OnlineQueue(key="{SUPPORT_SET_KEY}", queue_length={size}, dim={dim}).'
        )
    return support[-size:].to(device=like.device, dtype=like.dtype)


def nnclr_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for NNCLR.

    Module attributes:
        backbone: ``[B, ...] -> [B, D]`` feature extractor.
        projector: ``[B, D] -> [B, P]`` projection head, ``P == hparams.projection_dim``.
        predictor: ``[B, P] -> [B, P]`` prediction head on the online branch.
        nnclr_loss: contrastive loss ``(prediction, positive) -> scalar``, e.g.
            ``ssl_losses.NTXEntLoss(temperature=0.1)``.
        hparams.support_set_size: how many of the newest queued projections form the support set.
        hparams.projection_dim: ``P``, the width of the projections and of the queue rows.

    The trainer needs ``ssl_callbacks.OnlineQueue(key="nnclr_support_set",
    queue_length=support_set_size, dim=projection_dim)``, which stores the ``nnclr_support_set``
    output (the detached projections of every training row) after each step. In training, with
    views ``z_0..z_{V-1}`` (folded by ``sample_idx``), predictions ``p_i = predictor(z_i)`` and
    ``NN(z)`` the cosine nearest neighbour of ``z`` in the support set (detached), the loss is the
    mean over ordered view pairs ``i != j`` of ``nnclr_loss(p_i, NN(z_j))``. While the queue is
    still empty, ``z_j`` itself stands in for ``NN(z_j)`` (plain contrastive pairs).

    Args:
        self: The bound module (``ssl_core.Module``) attached to a trainer.
        batch: Batch dict with ``image`` and, in training, ``sample_idx``; ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``), ``label`` when present; in training also ``loss`` and
        ``nnclr_support_set`` (``[B, P]``, detached).

    Raises:
        AttributeError: A required module attribute or hyper-parameter is missing.
        KeyError: ``image`` is missing, or ``sample_idx`` is missing in training.
        LookupError: The trainer has no ``"nnclr_support_set"`` queue.
        ValueError: Fewer than 2 views per sample, a projection or queue width other than
            ``projection_dim``, or an unknown stage.
    """
    training = check_stage(stage, _NAME)
    backbone = require(self, "backbone", _NAME, "ssl_core.backbone.SmallResNet()")
    out = base_outputs(batch)
    out["embedding"] = backbone(require_image(batch, _NAME))
    if not training:
        return out
    projector = require(self, "projector", _NAME, "ssl_core.backbone.MLP(...)")
    predictor = require(self, "predictor", _NAME, "ssl_core.backbone.MLP(...)")
    loss_fn = require(self, "nnclr_loss", _NAME, "ssl_losses.NTXEntLoss(temperature=0.1)")
    size = int(require_hparam(self, "support_set_size", _NAME, "16384"))
    dim = int(require_hparam(self, "projection_dim", _NAME, "256"))

    projections = projector(out["embedding"])
    if projections.ndim != 2 or projections.shape[1] != dim:
        raise ValueError(
            f"{_NAME}: the projector returned shape {tuple(projections.shape)}, expected "
            f"[B, {dim}] (hparams.projection_dim); make the projector's output width and "
            "hparams.projection_dim agree."
        )
    support = _support_set(self, size, dim, like=projections)
    views, predictions = fold_training_views(
        [projections, predictor(projections)], batch, _NAME, min_views=2, module=self
    )
    if support.shape[0] == 0:
        positives = views
    else:
        positives = [nearest_neighbours(z.detach(), support)[0] for z in views]
    losses = [
        as_scalar(loss_fn(predictions[i], positives[j]), _NAME, "nnclr_loss")
        for i in range(len(views))
        for j in range(len(views))
        if i != j
    ]
    out["loss"] = torch.stack(losses).mean()
    out[SUPPORT_SET_KEY] = projections.detach()
    return out
