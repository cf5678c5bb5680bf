"""Optimisers, schedules and the parsing of ``Module(optim=...)``."""

from ssl_core.optim.lars import LARS
from ssl_core.optim.multi import AttachedScheduler, MultiOptimizer
from ssl_core.optim.schedulers import LinearWarmupCosineAnnealingLR
from ssl_core.optim.spec import (
    BuiltOptimizer,
    OptimSpec,
    assign_parameters,
    build_optimizers,
    optimizer_names,
    parse_optim,
    scheduler_names,
)

__all__ = [
    "LARS",
    "AttachedScheduler",
    "BuiltOptimizer",
    "LinearWarmupCosineAnnealingLR",
    "MultiOptimizer",
    "OptimSpec",
    "assign_parameters",
    "build_optimizers",
    "optimizer_names",
    "parse_optim",
    "scheduler_names",
]
