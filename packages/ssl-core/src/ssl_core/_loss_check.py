"""The training-loss checks of :class:`ssl_core.Module`: present, scalar, finite."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from ssl_core.errors import NonFiniteLossError


def check_loss(
    module: pl.LightningModule, out: Mapping[str, Any], required: bool
) -> torch.Tensor | None:
    """Return ``out["loss"]`` after checking it is a finite scalar tensor.

    Args:
        module: The module being trained (its trainer gives the step and the checkpoint).
        out: The forward's training outputs.
        required: Whether a loss must be present (the module has an optimiser).
    """
    if "loss" not in out:
        if not required:
            return None
        raise KeyError(
            f"The forward's training output has no 'loss' (keys: {sorted(map(str, out))}). "
            "Return out['loss'] = <scalar tensor> when stage == 'train', or use optim=False "
            "for a module that is not trained."
        )
    loss = out["loss"]
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        shape = list(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(
            f"out['loss'] must be a scalar tensor, got {shape}. Reduce it, e.g. "
            "loss.mean(), and make sure it is a torch.Tensor that requires grad."
        )
    if not bool(torch.isfinite(loss.detach())):
        trainer = module._trainer
        step = trainer.global_step if trainer is not None else -1
        kept = ""
        callback = trainer.checkpoint_callback if trainer is not None else None
        if callback is not None and getattr(callback, "last_model_path", ""):
            kept = f" The last good checkpoint is kept: {callback.last_model_path}."
        elif callback is not None and getattr(callback, "best_model_path", ""):
            kept = f" The last good checkpoint is kept: {callback.best_model_path}."
        raise NonFiniteLossError(
            f"The training loss is {loss.item()} at global step {step}; training stopped "
            f"before the optimiser step, so the weights are those of step {step}.{kept} "
            "Fix: lower the learning rate, add warm-up, set Trainer(gradient_clip_val=...), "
            "or use a more stable precision (bf16-mixed instead of 16-mixed).",
            step=step,
        )
    return loss
