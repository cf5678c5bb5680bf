"""MoCo v3 forward (Chen, Xie & He, 2021): queries against a momentum encoder's keys."""

from __future__ import annotations

from typing import Any

import torch

from ssl_forwards._common import (
    as_scalar,
    base_outputs,
    check_stage,
    fold_training_views,
    require,
    require_image,
)
from ssl_forwards._multicrop import check_crop_size, require_wrapper

_NAME = "mocov3_forward"


def mocov3_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for MoCo v3.

    Module attributes:
        backbone: ``ssl_core.TeacherStudentWrapper`` around a ``[B, ...] -> [B, D]`` network;
            its teacher is the momentum encoder's backbone.
        projector: ``ssl_core.TeacherStudentWrapper`` around the ``[B, D] -> [B, P]`` projection
            MLP (ending in a batch norm without affine parameters, as the official code).
        predictor: ``[B, P] -> [B, P]`` 2-layer MLP on the query branch only.
        mocov3_loss: ``ssl_losses.MoCoV3Loss(temperature=0.2)`` (1.0 for ResNets), called as
            ``mocov3_loss(q1, q2, k1, k2)``.

    The momentum encoder (backbone and projector teachers) moves only by EMA (cosine 0.99 -> 1
    in the paper): add ``ssl_callbacks.TeacherStudentCallback()`` to the trainer. Training
    batches hold exactly 2 views per sample; with queries ``q_v = predictor(projector(
    backbone(x_v)))`` and keys ``k_v`` from the momentum encoder (no gradient), the loss is the
    symmetrised ``ctr(q1, k2) + ctr(q2, k1)``.

    ``embedding`` is the momentum encoder's backbone output, detached, in every stage (what the
    app's probes read and what it exports).

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: Batch dict with ``image`` and, in training, ``sample_idx``; ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``), ``label`` when present, ``loss`` in training.

    Raises:
        AttributeError: A required module attribute is missing.
        TypeError: ``backbone`` or ``projector`` is not a teacher/student wrapper.
        KeyError: ``image`` is missing, or ``sample_idx`` is missing in training.
        ValueError: Not exactly 2 views per sample in training, a crop size the ViT cannot take,
            or an unknown stage.
    """
    training = check_stage(stage, _NAME)
    backbone = require_wrapper(self, "backbone", _NAME, "<backbone>")
    image = require_image(batch, _NAME)
    check_crop_size(backbone, image, "image", _NAME)
    out = base_outputs(batch)
    with torch.no_grad():
        key_features = backbone.forward_teacher(image)
    out["embedding"] = key_features.detach()
    if not training:
        return out
    projector = require_wrapper(self, "projector", _NAME, "ssl_core.backbone.MLP(...)")
    predictor = require(self, "predictor", _NAME, "ssl_core.backbone.MLP(...)")
    loss_fn = require(self, "mocov3_loss", _NAME, "ssl_losses.MoCoV3Loss(temperature=0.2)")

    queries = predictor(projector.forward_student(backbone.forward_student(image)))
    with torch.no_grad():
        keys = projector.forward_teacher(key_features).detach()
    (q1, q2), (k1, k2) = fold_training_views([queries, keys], batch, _NAME, exact_views=2)
    out["loss"] = as_scalar(loss_fn(q1, q2, k1, k2), _NAME, "mocov3_loss")
    return out
