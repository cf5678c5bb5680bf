"""The training-loss checks of :class:`ssl_core.Module`: present and scalar now, finite later.

The finiteness check is recorded on the device (:mod:`ssl_core._deferred`) and read at the
Module's check points, so a training step never waits for the GPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch

from ssl_core._deferred import NON_FINITE_LOSS, Failure
from ssl_core.errors import NonFiniteLossError


def check_loss(out: Mapping[str, Any], required: bool) -> torch.Tensor | None:
    """Return ``out["loss"]`` after checking it is a scalar tensor (no device read).

    Args:
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
    return loss


def failure_error(module: pl.LightningModule, failure: Failure) -> Exception:
    """The exception to raise for a deferred check that failed (see :class:`Failure`)."""
    trainer = module._trainer
    now = trainer.global_step if trainer is not None else -1
    every = trainer.log_every_n_steps if trainer is not None else 0
    when = (
        f"Training stopped at global step {now}: the check runs on the device and is read "
        f"every log_every_n_steps={every} steps, at epoch ends and before each checkpoint save."
    )
    if failure.key != NON_FINITE_LOSS:
        return ValueError(f"{failure.key} (first seen at global step {failure.step}). {when}")
    kept = ""
    callback = trainer.checkpoint_callback if trainer is not None else None
    path = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
    if path:
        kept = f" No checkpoint is written after it; the last good checkpoint is kept: {path}."
    return NonFiniteLossError(
        f"The training loss is {failure.value} at global step {failure.step} (the first "
        f"non-finite step). {when}{kept} Fix: lower the learning rate, add warm-up, set "
        "Trainer(gradient_clip_val=...), or use a more stable precision (bf16-mixed instead "
        "of 16-mixed).",
        step=failure.step,
    )
