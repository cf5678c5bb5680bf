"""SimSiam forward (Chen & He, 2021): predict the other view's projection, stop-gradient."""

from __future__ import annotations

from typing import Any

from ssl_forwards._common import (
    as_scalar,
    base_outputs,
    check_stage,
    fold_training_views,
    require,
    require_image,
)
from ssl_forwards._multicrop import check_crop_size

_NAME = "simsiam_forward"


def simsiam_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for SimSiam.

    Module attributes:
        backbone: ``[B, ...] -> [B, D]`` feature extractor.
        projector: ``[B, D] -> [B, P]`` 3-layer MLP ending in a batch norm (the paper's).
        predictor: ``[B, P] -> [B, P]`` bottleneck MLP (``P -> P/4 -> P`` in the paper).
        simsiam_loss: ``(p, z) -> scalar``, e.g. ``ssl_losses.NegativeCosineSimilarity()``.

    Training batches hold exactly 2 views per sample. With projections ``z_v`` and predictions
    ``p_v = predictor(z_v)`` the loss is ``(simsiam_loss(p_0, sg(z_1)) + simsiam_loss(p_1,
    sg(z_0))) / 2``, ``sg`` the stop-gradient (``detach``); no negatives, no momentum encoder.

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: Batch dict with ``image`` and, in training, ``sample_idx``; ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``, every row), ``label`` when present, ``loss`` in training.

    Raises:
        AttributeError: A required module attribute is missing.
        KeyError: ``image`` is missing, or ``sample_idx`` is missing in training.
        ValueError: Not exactly 2 views per sample in training, a crop size the ViT cannot take,
            or an unknown stage.
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
    predictor = require(self, "predictor", _NAME, "ssl_core.backbone.MLP(...)")
    loss_fn = require(self, "simsiam_loss", _NAME, "ssl_losses.NegativeCosineSimilarity()")
    projections = projector(out["embedding"])
    (z0, z1), (p0, p1) = fold_training_views(
        [projections, predictor(projections)], batch, _NAME, exact_views=2
    )
    loss = (
        as_scalar(loss_fn(p0, z1.detach()), _NAME, "simsiam_loss")
        + as_scalar(loss_fn(p1, z0.detach()), _NAME, "simsiam_loss")
    ) / 2
    out["loss"] = loss
    return out
