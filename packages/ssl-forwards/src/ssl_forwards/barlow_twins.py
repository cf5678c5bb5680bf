"""Barlow Twins forward (Zbontar et al., 2021): cross-correlation of two views towards identity."""

from __future__ import annotations

from typing import Any

from ssl_forwards._common import joint_embedding_forward


def barlow_twins_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for Barlow Twins.

    Module attributes:
        backbone: ``[B, ...] -> [B, D]`` feature extractor.
        projector: ``[B, D] -> [B, P]`` projector (typically a wide MLP with batch norm).
        barlow_loss: ``(z_a, z_b) -> scalar``, e.g.
            ``ssl_losses.BarlowTwinsLoss(lambda_=5e-3)``.

    Training batches must hold exactly 2 views per sample (rows sharing ``sample_idx``); the
    loss is ``barlow_loss(z_0, z_1)`` with views in order of appearance.

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
        forward_name="barlow_twins_forward",
        loss_name="barlow_loss",
        loss_example="ssl_losses.BarlowTwinsLoss(lambda_=5e-3)",
        exact_views=2,
    )
