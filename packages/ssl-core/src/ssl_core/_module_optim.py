"""Lightning's ``configure_optimizers`` output for :class:`ssl_core.Module`'s optimiser specs."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl

from ssl_core.optim.spec import OptimSpec, build_optimizers


def configure_optimizers(module: pl.LightningModule, specs: list[OptimSpec]) -> Any:
    """Build the optimiser and scheduler of ``specs`` (zero or one) in Lightning's format."""
    if not specs:
        return None
    trainer = module._trainer
    total_steps = total_epochs = None
    if trainer is not None:
        estimated = trainer.estimated_stepping_batches
        total_steps = None if math.isinf(estimated) else int(estimated)
        total_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
    built = build_optimizers(module, specs, total_steps, total_epochs)
    (b,) = built  # parse_optim yields at most one spec
    if b.scheduler is None:
        return [b.optimizer], []
    config = {
        "scheduler": b.scheduler,
        "interval": b.spec.interval,
        "frequency": b.spec.frequency,
        "name": f"lr-{b.spec.name}",
    }
    return [b.optimizer], [config]
