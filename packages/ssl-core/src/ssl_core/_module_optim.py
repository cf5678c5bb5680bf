"""Lightning's ``configure_optimizers`` output for :class:`ssl_core.Module`'s optimiser specs."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl

from ssl_core.optim.multi import AttachedScheduler, MultiOptimizer
from ssl_core.optim.spec import OptimSpec, build_optimizers


def configure_optimizers(module: pl.LightningModule, specs: list[OptimSpec]) -> Any:
    """Build the optimisers and schedulers of ``specs`` in Lightning's return format.

    Several specs are wrapped in one :class:`~ssl_core.optim.MultiOptimizer`, each scheduler
    attached to it so that it steps at its own interval.
    """
    if not specs:
        return None
    trainer = module._trainer
    total_steps = total_epochs = None
    if trainer is not None:
        estimated = trainer.estimated_stepping_batches
        total_steps = None if math.isinf(estimated) else int(estimated)
        total_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
    built = build_optimizers(module, specs, total_steps, total_epochs)
    if len(built) == 1:
        optimizer, schedulers = built[0].optimizer, [built[0].scheduler]
    else:
        optimizer = MultiOptimizer([b.optimizer for b in built], names=[b.spec.name for b in built])
        schedulers = [
            None if b.scheduler is None else AttachedScheduler(b.scheduler, optimizer)
            for b in built
        ]
    configs = []
    for b, scheduler in zip(built, schedulers, strict=True):
        if scheduler is None:
            continue
        config = {
            "scheduler": scheduler,
            "interval": b.spec.interval,
            "frequency": b.spec.frequency,
            "name": f"lr-{b.spec.name}",
        }
        if b.spec.monitor is not None:
            config["monitor"] = b.spec.monitor
        configs.append(config)
    return [optimizer], configs
