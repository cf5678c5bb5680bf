"""Logging of a forward's scalar outputs and torchmetrics for :class:`ssl_core.Module`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn


def log_outputs(
    module: pl.LightningModule,
    out: Mapping[str, Any],
    batch: Any,
    stage: str,
    metrics: Mapping[str, tuple[str, str]] | None,
    metric_modules: nn.ModuleDict | None,
    log_step: bool = False,
) -> None:
    """Log every real scalar tensor of ``out`` as ``{stage}/{key}`` and update the metrics.

    Train scalars are logged per step as ``train/{key}`` and as the epoch mean
    ``train/{key}_epoch``; val/test scalars per epoch. ``metrics`` maps a metric name to its
    ``(preds key, target key)``, looked up in ``out`` and then in ``batch``.

    Nothing here reads the device: Lightning turns progress-bar values into Python numbers
    after every batch, so the progress bar's ``loss`` is a host copy made only on
    ``log_step`` batches (the steps Lightning logs) and shown until the next one.
    """
    trainer = module._trainer
    sync = trainer is not None and trainer.world_size > 1
    size = batch_size(batch)
    for key, value in out.items():
        if not (isinstance(value, torch.Tensor) and value.ndim == 0) or value.is_complex():
            continue
        value = value.detach().float()
        if stage == "train":
            # Exact key per step (what progress bars and step-level monitors read) and the
            # epoch mean under "<key>_epoch" (synced across processes once per epoch).
            module.log(f"train/{key}", value, on_step=True, on_epoch=False, batch_size=size)
            if key == "loss" and log_step:
                # a host tensor, so the per-batch progress-bar conversion reads no device
                module.log("loss", value.cpu(), prog_bar=True, logger=False, on_step=True)
            module.log(
                f"train/{key}_epoch",
                value,
                on_step=False,
                on_epoch=True,
                sync_dist=sync,
                batch_size=size,
            )
        else:
            module.log(
                f"{stage}/{key}",
                value,
                on_step=False,
                on_epoch=True,
                sync_dist=sync,
                batch_size=size,
            )
    if not metrics or metric_modules is None:
        return
    for name, (preds_key, target_key) in metrics.items():
        preds = lookup(out, batch, preds_key, stage, name)
        target = lookup(out, batch, target_key, stage, name)
        metric = metric_modules[name]
        metric.update(preds.detach(), target.detach())
        module.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True)


def batch_size(batch: Any) -> int | None:
    """Return the number of rows of ``batch["image"]`` (``None`` when there is no image)."""
    if isinstance(batch, Mapping):
        image = batch.get("image")
        if isinstance(image, torch.Tensor) and image.ndim > 0:
            return int(image.shape[0])
    return None


def lookup(out: Mapping[str, Any], batch: Any, key: str, stage: str, name: str) -> Any:
    """Return ``out[key]``, else ``batch[key]``; raise naming both places when neither has it."""
    if key in out:
        return out[key]
    if isinstance(batch, Mapping) and key in batch:
        return batch[key]
    raise KeyError(
        f"Metric {stage}/{name} reads {key!r}, which is neither in the forward's outputs "
        f"({sorted(map(str, out))}) nor in the batch. Return it from the forward or set "
        "{'metric': m, 'preds': ..., 'target': ...}."
    )
