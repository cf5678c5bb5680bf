"""iBOT forward (Zhou et al. 2022): DINO's CLS self-distillation plus masked-patch distillation."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ssl_data.masks import BlockMasking
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
    optional_hparam,
    require_wrapper,
)
from ssl_forwards._vit import check_vit, grid_of, pool_tokens, require_teacher_updates

_NAME = "ibot_forward"


def _head_tokens(call: Any, head: Any, tokens: torch.Tensor, epoch: int) -> torch.Tensor:
    """Apply a ``[B, D] -> [B, K]`` head to ``[B, L, D]`` tokens."""
    b, length, d = tokens.shape
    return head_call(call, head, tokens.reshape(b * length, d), epoch).reshape(b, length, -1)


def _masked_head_tokens(
    call: Any, head: Any, tokens: torch.Tensor, mask: torch.Tensor, epoch: int
) -> torch.Tensor:
    """The student head on the masked tokens only, zeros elsewhere: same loss and gradients.

    The patch loss weighs every unmasked token by 0, so running the head there is wasted work
    (most of an iBOT step on a small ViT). A head with batch norm in training mode sees all
    tokens, as in the official code, because its batch statistics depend on them.
    """
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in head.modules()):
        return _head_tokens(call, head, tokens, epoch)
    selected = head_call(call, head, tokens[mask], epoch)
    zeros = selected.new_zeros(*mask.shape, selected.shape[-1])
    return zeros.index_put((mask,), selected)


def ibot_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for iBOT.

    Module attributes:
        backbone: ``ssl_core.TeacherStudentWrapper`` around a ``ViTBackbone`` (momentum
            0.996 -> 1); add ``ssl_callbacks.TeacherStudentCallback()`` to the trainer.
        projector: ``ssl_core.TeacherStudentWrapper`` around one ``ssl_core.backbone.DINOHead``
            shared by the CLS token and the patch tokens (iBOT's ``shared_head=True``; the same
            attribute as ``dino_forward``'s head); a ``DINOHead`` is told the epoch.
        dino_loss: ``ssl_losses.DINOLoss(out_dim, ...)`` for the CLS tokens.
        ibot_patch_loss: ``ssl_losses.iBOTPatchLoss(out_dim, ...)`` for the masked patches.
        masking: optional ``ssl_data.masks.BlockMasking``; defaults to
            ``BlockMasking(pred_ratio=(0.0, 0.3), pred_ratio_var=(0.0, 0.2))`` (the published
            recipe: half the global views unmasked, the others 10-50 %).
        hparams.lambda1, hparams.lambda2: weights of the CLS and patch losses (default 1.0).
        hparams.embedding_pool: ``"cls"`` (default) or ``"mean"``.

    Training batches hold the global views in ``image`` (at least 2 per sample, folded by
    ``sample_idx``) and optionally local crops in ``local_image``/``local_sample_idx``. The
    teacher sees the full global views; the student sees them with block-masked patches replaced
    by the backbone's mask token, and the local crops unmasked; the student's head runs on the
    masked patch tokens only (the patch loss ignores the others). ``loss = lambda1 *
    dino_loss(student CLS of all views, teacher CLS of the global views) + lambda2 *
    ibot_patch_loss(student patches, teacher patches, masks)``. ``embedding`` is the teacher's
    pooled output of ``image`` in every stage.

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: Batch dict with ``image`` (and ``sample_idx`` in training); ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``), ``label`` when present; in training ``loss``, ``loss_cls``,
        ``loss_patch`` (detached) and ``ibot_mask`` (``[B, L]``, True = masked).

    Raises:
        AttributeError: A required module attribute is missing.
        TypeError: ``backbone``/``projector`` are not teacher/student wrappers, or not a ViT
            with a CLS token.
        RuntimeError: Training under a trainer without ``TeacherStudentCallback``.
        KeyError: ``image`` or ``sample_idx`` is missing.
        ValueError: Fewer than 2 global views per sample, a crop size the ViT cannot take, or
            an unknown stage.
    """
    training = check_stage(stage, _NAME)
    backbone = require_wrapper(self, "backbone", _NAME, "<ViTBackbone>")
    check_vit(backbone.student, _NAME)
    image = require_image(batch, _NAME)
    check_crop_size(backbone, image, "image", _NAME)
    pool = optional_hparam(self, "embedding_pool", "cls")
    out = base_outputs(batch)
    with torch.no_grad():
        teacher_tokens = backbone.teacher.forward_tokens(image)
    out["embedding"] = pool_tokens(teacher_tokens, pool, _NAME).detach()
    if not training:
        return out
    require_teacher_updates(self, _NAME)
    head = require_wrapper(self, "projector", _NAME, "ssl_core.backbone.DINOHead(<D>, out_dim=<K>)")
    dino_loss = require(self, "dino_loss", _NAME, "ssl_losses.DINOLoss(out_dim)")
    patch_loss = require(self, "ibot_patch_loss", _NAME, "ssl_losses.iBOTPatchLoss(out_dim)")
    masking = getattr(self, "masking", None) or BlockMasking((0.0, 0.3), (0.0, 0.2))
    if teacher_tokens.get("cls") is None:
        raise TypeError(
            f"{_NAME} distils the CLS token but the backbone has none; use a ViT with a class "
            "token (backbone=vit_tiny)."
        )
    mask = masking(image.shape[0], grid_of(backbone.student, image), device=image.device)
    epoch = current(self, "current_epoch")
    student = backbone.student.forward_tokens(image, mask=mask)
    # Views are folded before the head: the tokens are D wide, the head's logits out_dim wide.
    t_cls_v, s_cls_v, t_tok_v, s_tok_v, mask_v = fold_training_views(
        [
            teacher_tokens["cls"],
            student["cls"],
            teacher_tokens["patches"],
            student["patches"],
            mask,
        ],
        batch,
        _NAME,
        min_views=2,
    )
    n_samples = t_cls_v[0].shape[0]
    views = len(t_cls_v)
    mask_all = torch.cat(mask_v)
    with torch.no_grad():  # one head call per role over all views, as the official code
        t_cls_v = head.forward_teacher(torch.cat(t_cls_v)).chunk(views)
        t_patch = _head_tokens(head.forward_teacher, head, torch.cat(t_tok_v), epoch)
    s_cls_v = list(head_call(head.forward_student, head, torch.cat(s_cls_v), epoch).chunk(views))
    s_patch = _masked_head_tokens(head.forward_student, head, torch.cat(s_tok_v), mask_all, epoch)
    t_patch_v, s_patch_v = list(t_patch.chunk(views)), list(s_patch.chunk(views))
    local = local_views(batch, _NAME, n_samples)
    if local is not None:
        local_image, local_idx = local
        check_crop_size(backbone, local_image, LOCAL_IMAGE_KEY, _NAME)
        s_local = head_call(head.forward_student, head, backbone.student(local_image), epoch)
        s_cls_v = s_cls_v + fold_local(s_local, local_idx, n_samples, _NAME)
    loss_cls = as_scalar(dino_loss(s_cls_v, t_cls_v, epoch=epoch), _NAME, "dino_loss")
    loss_patch = as_scalar(
        patch_loss(s_patch_v, t_patch_v, mask_v, epoch=epoch), _NAME, "ibot_patch_loss"
    )
    lambda1 = optional_hparam(self, "lambda1", 1.0)
    lambda2 = optional_hparam(self, "lambda2", 1.0)
    out["loss"] = lambda1 * loss_cls + lambda2 * loss_patch
    out["loss_cls"] = loss_cls.detach()
    out["loss_patch"] = loss_patch.detach()
    out["ibot_mask"] = mask
    return out
