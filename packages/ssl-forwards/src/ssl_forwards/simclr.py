"""SimCLR forward (Chen et al., 2020): contrast the projections of the views of each sample."""

from __future__ import annotations

from typing import Any

from ssl_forwards._common import joint_embedding_forward


def simclr_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for SimCLR.

    Module attributes:
        backbone: ``[B, ...] -> [B, D]`` feature extractor.
        projector: ``[B, D] -> [B, P]`` projection head.
        simclr_loss: contrastive loss ``(z_a, z_b) -> scalar``, e.g.
            ``ssl_losses.NTXEntLoss(temperature=0.5)``.

    In training the flat multi-view batch (``N*V`` rows) is folded by ``sample_idx``. With
    ``V == 2`` the loss is ``simclr_loss(z_0, z_1)``; with ``V > 2`` it is the mean of
    ``simclr_loss(z_i, z_j)`` over all ``V*(V-1)/2`` view pairs ``i < j``.

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: Batch dict with ``image`` and, in training, ``sample_idx``; ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``, every row), ``label`` when the batch has one, and ``loss``
        in training.

    Raises:
        AttributeError: A required module attribute is missing.
        KeyError: ``image`` is missing, or ``sample_idx`` is missing in training.
        ValueError: Fewer than 2 views per sample in training, or an unknown stage.

    Example:
        >>> import ssl_core, ssl_losses, torch  # doctest: +SKIP
        >>> module = ssl_core.Module(  # doctest: +SKIP
        ...     forward=simclr_forward,
        ...     backbone=ssl_core.backbone.SmallResNet(),
        ...     projector=torch.nn.LazyLinear(128),
        ...     simclr_loss=ssl_losses.NTXEntLoss(temperature=0.5),
        ... )
    """
    return joint_embedding_forward(
        self,
        batch,
        stage,
        forward_name="simclr_forward",
        loss_name="simclr_loss",
        loss_example="ssl_losses.NTXEntLoss(temperature=0.5)",
        min_views=2,
    )
