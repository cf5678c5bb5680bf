"""I-JEPA forward (Assran et al. 2023): predict the EMA target encoder's features of blocks."""

from __future__ import annotations

from typing import Any

import torch

from ssl_data.masks import MultiBlockMasking
from ssl_forwards._common import as_scalar, base_outputs, check_stage, require, require_image
from ssl_forwards._multicrop import optional_hparam, require_wrapper
from ssl_forwards._vit import check_vit, grid_of, pool_tokens, require_teacher_updates
from ssl_losses import IJEPALoss

_NAME = "ijepa_forward"


def _gather(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(tokens, 1, index[:, :, None].expand(-1, -1, tokens.shape[2]))


def ijepa_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for I-JEPA.

    Module attributes:
        backbone: ``ssl_core.TeacherStudentWrapper`` around a ``ViTBackbone``: the student is the
            context encoder, the EMA teacher the target encoder (momentum 0.996 -> 1 in the
            paper); add ``ssl_callbacks.TeacherStudentCallback()`` to the trainer.
        predictor: ``ssl_core.backbone.IJEPAPredictor`` for the backbone's width and patch grid.
        ijepa_loss: optional ``(predictions, targets) -> scalar``; defaults to
            ``ssl_losses.IJEPALoss()`` (L2 on layer-normalised, detached targets).
        masking: optional ``ssl_data.masks.MultiBlockMasking``; defaults to the paper's
            (4 targets of scale 0.15-0.2, aspect 0.75-1.5; one context of scale 0.85-1.0).
        hparams.embedding_pool: ``"mean"`` (default, the official evaluation) or ``"cls"``.

    The target encoder runs on the full image without gradient; its patch tokens at each target
    block are the targets. The context encoder runs on the context patches only (targets
    removed) and the predictor, given the context tokens and the target positions, predicts each
    target block. ``embedding`` is the pooled target-encoder output of the full image in every
    stage (no extra pass).

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: Batch dict with ``image``; ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``), ``label`` when present, ``loss`` in training.

    Raises:
        AttributeError: ``backbone`` or ``predictor`` is missing.
        TypeError: ``backbone`` is not a teacher/student wrapper around a ViT.
        RuntimeError: Training under a trainer without ``TeacherStudentCallback``.
        KeyError: ``image`` is missing.
        ValueError: The image size is not divisible by the patch size, or an unknown stage.
    """
    training = check_stage(stage, _NAME)
    backbone = require_wrapper(self, "backbone", _NAME, "<ViTBackbone>")
    check_vit(backbone.student, _NAME)
    image = require_image(batch, _NAME)
    pool = optional_hparam(self, "embedding_pool", "mean")
    out = base_outputs(batch)
    with torch.no_grad():
        full = backbone.teacher.forward_tokens(image)
    out["embedding"] = pool_tokens(full, pool, _NAME).detach()
    if not training:
        return out
    require_teacher_updates(self, _NAME)
    predictor = require(self, "predictor", _NAME, "ssl_core.backbone.IJEPAPredictor(...)")
    loss_fn = getattr(self, "ijepa_loss", None) or IJEPALoss()
    masking = getattr(self, "masking", None) or MultiBlockMasking()
    masks = masking(image.shape[0], grid_of(backbone.student, image), device=image.device)
    teacher_patches = full["patches"].detach()
    targets = torch.cat([_gather(teacher_patches, t) for t in masks.targets])
    target_idx = torch.cat(masks.targets)
    predictions = []
    for context_idx in masks.context:
        context = backbone.student.forward_tokens(image, keep=context_idx)["patches"]
        # one predictor pass for all target blocks: the context is repeated per block
        n_targets = len(masks.targets)
        predictions.append(
            predictor(context.repeat(n_targets, 1, 1), context_idx.repeat(n_targets, 1), target_idx)
        )
    pred = torch.cat(predictions)
    target = targets.repeat(len(masks.context), 1, 1)
    out["loss"] = as_scalar(loss_fn(pred, target), _NAME, "ijepa_loss")
    return out
