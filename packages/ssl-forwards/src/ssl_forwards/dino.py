"""DINO forward (Caron et al., 2021): self-distillation from an EMA teacher, multi-crop."""

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
from ssl_forwards._multicrop import (
    LOCAL_IMAGE_KEY,
    check_crop_size,
    current,
    fold_local,
    head_call,
    local_views,
    require_wrapper,
)

_NAME = "dino_forward"


def dino_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for DINO.

    Module attributes:
        backbone: ``ssl_core.TeacherStudentWrapper`` around a ``[B, ...] -> [B, D]`` network (a
            ViT from ``ssl_core.backbone.from_timm`` or a ResNet).
        projector: ``ssl_core.TeacherStudentWrapper`` around the head, typically
            ``ssl_core.backbone.DINOHead(D, out_dim=K)``; a ``DINOHead`` is told the epoch (its
            optional last-layer freeze).
        dino_loss: ``ssl_losses.DINOLoss(out_dim=K, ...)``, called as
            ``dino_loss(student_out, teacher_out, epoch=current_epoch)``.

    The teachers move only by EMA (cosine 0.996 -> 1 in the paper): add
    ``ssl_callbacks.TeacherStudentCallback()`` to the trainer. In training the global views
    (``image``, at least 2 per sample, folded by ``sample_idx``) go through student and teacher;
    the multi-crop local views (``local_image`` folded by ``local_sample_idx``, when the batch has
    them) through the student only. ``student_out`` lists the global views first, in the
    teacher's order, then the local views, so the loss skips the pairs of a view with itself.

    ``embedding`` is the teacher backbone's output for the global rows (DINO evaluates the
    teacher), detached, in every stage.

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: ``image`` and, in training, ``sample_idx`` (and optionally ``local_image`` with
            ``local_sample_idx``); ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``), ``label`` when present, ``loss`` in training.

    Raises:
        AttributeError: A required module attribute is missing.
        TypeError: ``backbone`` or ``projector`` is not a teacher/student wrapper.
        KeyError: ``image`` or ``sample_idx`` is missing, or ``local_image`` comes without
            ``local_sample_idx``.
        ValueError: Fewer than 2 global views per sample, a crop size the ViT cannot take, local
            views of other samples, or an unknown stage.
    """
    training = check_stage(stage, _NAME)
    backbone = require_wrapper(self, "backbone", _NAME, "<backbone>")
    image = require_image(batch, _NAME)
    check_crop_size(backbone, image, "image", _NAME)
    out = base_outputs(batch)
    with torch.no_grad():
        teacher_features = backbone.forward_teacher(image)
    out["embedding"] = teacher_features.detach()
    if not training:
        return out
    projector = require_wrapper(
        self, "projector", _NAME, "ssl_core.backbone.DINOHead(<D>, out_dim=<K>)"
    )
    loss_fn = require(self, "dino_loss", _NAME, "ssl_losses.DINOLoss(out_dim=<K>)")
    epoch = current(self, "current_epoch")

    student_global = head_call(
        projector.forward_student, projector, backbone.forward_student(image), epoch
    )
    with torch.no_grad():
        teacher_global = projector.forward_teacher(teacher_features).detach()
    student_views, teacher_views = fold_training_views(
        [student_global, teacher_global], batch, _NAME, min_views=2
    )
    n_samples = teacher_views[0].shape[0]
    local = local_views(batch, _NAME, n_samples)
    if local is not None:
        local_image, local_idx = local
        check_crop_size(backbone, local_image, LOCAL_IMAGE_KEY, _NAME)
        student_local = head_call(
            projector.forward_student, projector, backbone.forward_student(local_image), epoch
        )
        student_views = student_views + fold_local(student_local, local_idx, n_samples, _NAME)
    out["loss"] = as_scalar(loss_fn(student_views, teacher_views, epoch=epoch), _NAME, "dino_loss")
    return out
