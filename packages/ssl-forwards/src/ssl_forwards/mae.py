"""MAE forward (He et al. 2022): encode the visible quarter of the patches, reconstruct the rest."""

from __future__ import annotations

from typing import Any

import torch

from ssl_data.masks import RandomMasking, patchify
from ssl_forwards._common import as_scalar, base_outputs, check_stage, require, require_image
from ssl_forwards._multicrop import optional_hparam
from ssl_forwards._vit import check_vit, grid_of, pool_tokens
from ssl_losses import MAELoss

_NAME = "mae_forward"


def mae_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for MAE.

    Module attributes:
        backbone: ``ssl_core.backbone.ViTBackbone`` (``backbone=vit_tiny`` in the app).
        decoder: ``ssl_core.backbone.MAEDecoder`` built for the backbone's width and patch grid,
            ``patch_dim = patch_size**2 * channels``.
        mae_loss: optional ``(pred, target_patches, mask) -> scalar``; defaults to
            ``ssl_losses.MAELoss(norm_pix_loss=True)``.
        masking: optional ``ssl_data.masks.RandomMasking``; defaults to
            ``RandomMasking(hparams.mask_ratio)`` (``mask_ratio`` 0.75 when unset).
        hparams.embedding_pool: ``"mean"`` (default) or ``"cls"``, the ``embedding`` pooling.

    In training each row is masked independently (the ``keep`` indices of a per-sample shuffle);
    the encoder runs on the visible patches only, the decoder predicts every patch and the loss
    compares the predictions with ``patchify(image)`` on the masked patches only. ``embedding`` is
    the pooled encoder output of the whole, unmasked image (computed without gradient in
    training), so online probes see the same features as in evaluation.

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: Batch dict with ``image`` (``[B, C, H, W]``, sides divisible by the patch size);
            ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``), ``label`` when present; in training ``loss`` and ``mae_mask``
        (``[B, L]`` bool, True = masked).

    Raises:
        AttributeError: ``backbone`` or ``decoder`` is missing.
        TypeError: The backbone is not a ViT (use ``backbone=vit_tiny``).
        KeyError: ``image`` is missing.
        ValueError: The image size is not divisible by the patch size, or an unknown stage.
    """
    training = check_stage(stage, _NAME)
    backbone = check_vit(
        require(self, "backbone", _NAME, "ssl_core.backbone.from_timm(...)"), _NAME
    )
    image = require_image(batch, _NAME)
    pool = optional_hparam(self, "embedding_pool", "mean")
    out = base_outputs(batch)
    if not training:
        out["embedding"] = pool_tokens(backbone.forward_tokens(image), pool, _NAME)
        return out
    decoder = require(self, "decoder", _NAME, "ssl_core.backbone.MAEDecoder(...)")
    loss_fn = getattr(self, "mae_loss", None) or MAELoss(norm_pix_loss=True)
    masking = getattr(self, "masking", None) or RandomMasking(
        optional_hparam(self, "mask_ratio", 0.75)
    )
    gh, gw = grid_of(backbone, image)
    masks = masking(image.shape[0], gh * gw, device=image.device)
    tokens = backbone.forward_tokens(image, keep=masks.keep)
    prefix = tokens.get("cls")
    pred = decoder(tokens["patches"], masks.restore, None if prefix is None else prefix[:, None])
    target = patchify(image, backbone.patch_size)
    out["loss"] = as_scalar(loss_fn(pred, target, masks.mask), _NAME, "mae_loss")
    out["mae_mask"] = masks.mask
    with torch.no_grad():
        out["embedding"] = pool_tokens(backbone.forward_tokens(image), pool, _NAME)
    return out
