"""Optimisers, schedules and the parsing of ``Module(optim=...)`` (:mod:`ssl_core.optim.spec`)."""

from ssl_core.optim.lars import LARS
from ssl_core.optim.schedulers import LinearWarmupCosineAnnealingLR
from ssl_core.optim.spec import (
    BuiltOptimizer,
    OptimSpec,
    build_optimizers,
    optimizer_names,
    parameter_groups,
    parse_optim,
    scheduler_names,
)

__all__ = [
    "LARS",
    "BuiltOptimizer",
    "LinearWarmupCosineAnnealingLR",
    "OptimSpec",
    "build_optimizers",
    "optimizer_names",
    "parameter_groups",
    "parse_optim",
    "scheduler_names",
]
