"""VICReg forward (Bardes et al., 2022): variance-invariance-covariance between two views."""

from __future__ import annotations

from typing import Any

from ssl_forwards._common import joint_embedding_forward


def vicreg_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for VICReg.

    Module attributes:
        backbone: ``[B, ...] -> [B, D]`` feature extractor.
        projector: ``[B, D] -> [B, P]`` expander (VICReg uses a wide MLP).
        vicreg_loss: ``(z_a, z_b) -> scalar``, e.g. ``ssl_losses.VICRegLoss()``.

    Training batches must hold exactly 2 views per sample (rows sharing ``sample_idx``); the
    loss is ``vicreg_loss(z_0, z_1)`` with views in order of appearance.

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: Batch dict with ``image`` and, in training, ``sample_idx``; ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``, every row), ``label`` when present, ``loss`` in training.

    Raises:
        AttributeError: A required module attribute is missing.
        KeyError: ``image`` is missing, or ``sample_idx`` is missing in training.
        ValueError: Not exactly 2 views per sample in training, or an unknown stage.
    """
    return joint_embedding_forward(
        self,
        batch,
        stage,
        forward_name="vicreg_forward",
        loss_name="vicreg_loss",
        loss_example="ssl_losses.VICRegLoss()",
        exact_views=2,
    )
