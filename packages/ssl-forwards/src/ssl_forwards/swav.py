"""SwAV forward (Caron et al., 2020): swapped prediction of Sinkhorn codes over prototypes."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ssl_forwards._common import (
    as_scalar,
    base_outputs,
    check_stage,
    fold_training_views,
    require,
    require_hparam,
    require_image,
)
from ssl_forwards._multicrop import (
    LOCAL_IMAGE_KEY,
    check_crop_size,
    current,
    fold_local,
    local_views,
    optional_hparam,
)

SWAV_QUEUE_KEY = "swav_queue"
"""Output key of the detached normalised projections, and key of the ``OnlineQueue`` of them."""

_NAME = "swav_forward"


def _prototype_weight(self: Any) -> torch.Tensor:
    prototypes = require(
        self, "prototypes", _NAME, "torch.nn.Linear(<projection_dim>, <n_prototypes>, bias=False)"
    )
    weight = getattr(prototypes, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        raise TypeError(
            f"{_NAME} needs 'prototypes' to be an nn.Linear(projection_dim, n_prototypes, "
            f"bias=False), got {type(prototypes).__name__}."
        )
    if getattr(prototypes, "bias", None) is not None:
        raise ValueError(
            f"{_NAME}: the prototypes must have no bias (scores are cosine similarities to unit "
            "prototypes); build them as torch.nn.Linear(projection_dim, n_prototypes, bias=False)."
        )
    with torch.no_grad():  # the official code re-normalises the prototypes before every step
        weight.copy_(F.normalize(weight, dim=1, p=2))
    return weight


def _queue_scores(
    self: Any, weight: torch.Tensor, like: torch.Tensor, n_views: int
) -> list[torch.Tensor] | None:
    start = optional_hparam(self, "queue_start_epoch", None)
    if start is None or current(self, "current_epoch") < int(start):
        return None
    length = int(require_hparam(self, "queue_length", _NAME, "3840"))
    try:
        queue = self.get_queue(SWAV_QUEUE_KEY)
    except (LookupError, AttributeError) as err:
        raise LookupError(
            f"{_NAME} uses a feature queue from epoch hparams.queue_start_epoch={start}, but no "
            f"callback of the trainer holds the {SWAV_QUEUE_KEY!r} queue; add "
            f'ssl_callbacks.OnlineQueue(key="{SWAV_QUEUE_KEY}", queue_length={length}, '
            f"dim={like.shape[1]}) to the callbacks, or set hparams.queue_start_epoch=null."
        ) from err
    if queue.shape[0] < length:  # as the official code: only a full queue is used
        return None
    rows = queue[-length:].to(device=like.device, dtype=like.dtype)
    scores = rows @ weight.detach().to(like.dtype).T
    return [scores] * n_views


def swav_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for SwAV.

    Module attributes:
        backbone: ``[B, ...] -> [B, D]`` feature extractor.
        projector: ``[B, D] -> [B, P]`` projection MLP; its output is L2-normalised.
        prototypes: ``torch.nn.Linear(P, K, bias=False)``; its rows are L2-normalised in place
            before every training step, as the official code.
        swav_loss: ``ssl_losses.SwAVLoss(temperature=0.1, ...)``, called as
            ``swav_loss(high_resolution_scores, low_resolution_scores, queue_scores)``.
        hparams.freeze_prototypes_niters: optional; the prototypes get zero gradients while
            ``global_step`` is below it (default 0).
        hparams.queue_start_epoch: optional; from this epoch on the newest
            ``hparams.queue_length`` rows of the ``"swav_queue"`` queue (projections of earlier
            batches' global views) join the batch when computing the codes, once the queue holds
            that many rows. ``null`` (default): no queue. The queue needs
            ``ssl_callbacks.OnlineQueue(key="swav_queue", queue_length=..., dim=P)``.

    In training the global views (``image``, at least 2 per sample) give the high-resolution
    scores, from which the codes are computed; the multi-crop local views (``local_image``, when
    present) give low-resolution scores, which only predict codes.

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: ``image`` and, in training, ``sample_idx`` (and optionally ``local_image`` with
            ``local_sample_idx``); ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``, every row), ``label`` when present; in training ``loss``
        and, with a queue, ``swav_queue`` (``[B, P]`` normalised projections, detached).

    Raises:
        AttributeError: A required module attribute or hyper-parameter is missing.
        TypeError: ``prototypes`` is not a linear layer.
        KeyError: ``image`` or ``sample_idx`` is missing, or ``local_image`` comes without
            ``local_sample_idx``.
        LookupError: A queue is configured but no callback holds it.
        ValueError: Fewer than 2 global views per sample, a crop size the ViT cannot take,
            prototypes with a bias, or an unknown stage.
    """
    training = check_stage(stage, _NAME)
    backbone = require(self, "backbone", _NAME, "ssl_core.backbone.SmallResNet()")
    image = require_image(batch, _NAME)
    check_crop_size(backbone, image, "image", _NAME)
    out = base_outputs(batch)
    out["embedding"] = backbone(image)
    if not training:
        return out
    projector = require(self, "projector", _NAME, "ssl_core.backbone.MLP(...)")
    loss_fn = require(self, "swav_loss", _NAME, "ssl_losses.SwAVLoss(temperature=0.1)")
    weight = _prototype_weight(self)
    frozen = current(self, "global_step") < int(
        optional_hparam(self, "freeze_prototypes_niters", 0)
    )
    if frozen and weight.requires_grad:
        weight = weight.view_as(weight)  # a non-leaf alias, so the zeroing hook is not kept
        weight.register_hook(torch.zeros_like)  # zero (not missing) gradients keep DDP happy

    z = F.normalize(projector(out["embedding"]), dim=1, p=2)
    (high,) = fold_training_views([z @ weight.T], batch, _NAME, min_views=2)
    n_samples = high[0].shape[0]
    low: list[torch.Tensor] = []
    local = local_views(batch, _NAME, n_samples)
    if local is not None:
        local_image, local_idx = local
        check_crop_size(backbone, local_image, LOCAL_IMAGE_KEY, _NAME)
        z_local = F.normalize(projector(backbone(local_image)), dim=1, p=2)
        low = fold_local(z_local @ weight.T, local_idx, n_samples, _NAME)
    queue_scores = _queue_scores(self, weight, z, len(high))
    loss = loss_fn(high, low, queue_scores)
    out["loss"] = as_scalar(loss, _NAME, "swav_loss")
    if optional_hparam(self, "queue_start_epoch", None) is not None:
        out[SWAV_QUEUE_KEY] = z.detach()
    return out
