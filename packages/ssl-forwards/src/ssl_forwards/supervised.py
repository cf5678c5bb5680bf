"""Supervised forward: backbone -> classifier, cross-entropy against ``label``."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F

from ssl_forwards._common import as_scalar, base_outputs, check_stage, require, require_image


def supervised_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for supervised training (baselines, fine-tuning).

    Module attributes:
        backbone: ``[B, ...] -> [B, D]`` feature extractor.
        classifier: ``[B, D] -> [B, num_classes]`` head.
        supervised_loss: optional ``(logits, label) -> scalar``; defaults to
            ``torch.nn.functional.cross_entropy``.

    Multi-view batches need no folding: every row is classified against its own label.

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: Batch dict with ``image``; ``label`` is required in training.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``), ``logits`` (``[B, num_classes]``), and ``label`` and
        ``loss`` whenever the batch has labels (so validation logs ``val/loss``).

    Raises:
        AttributeError: ``backbone`` or ``classifier`` is missing.
        KeyError: ``image`` is missing, or ``label`` is missing in training.
        ValueError: An unknown stage.
    """
    training = check_stage(stage, "supervised_forward")
    backbone = require(self, "backbone", "supervised_forward", "ssl_core.backbone.SmallResNet()")
    classifier = require(
        self, "classifier", "supervised_forward", "torch.nn.Linear(backbone.out_features, C)"
    )
    out = base_outputs(batch)
    out["embedding"] = backbone(require_image(batch, "supervised_forward"))
    out["logits"] = classifier(out["embedding"])
    if "label" not in batch:
        if not training:
            return out
        raise KeyError(
            "supervised_forward needs batch['label'] in training to compute the cross-entropy "
            "loss; use a labelled dataset that yields 'label', or an SSL forward such as "
            "simclr_forward for unlabelled data."
        )
    loss_fn = getattr(self, "supervised_loss", None)
    if loss_fn is None:
        loss_fn = F.cross_entropy
    out["loss"] = as_scalar(loss_fn(out["logits"], batch["label"]), "supervised_forward", "loss")
    return out
