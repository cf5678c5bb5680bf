"""The ``optim`` argument of :class:`ssl_core.Module`: one optimiser, its schedule, its groups.

One form, every key optional::

    optim = {
        "optimizer": {"type": "LARS", "lr": 0.3, "weight_decay": 1e-6},  # or a factory
        "scheduler": {"type": "LinearWarmupCosineAnnealingLR", "warmup_steps": 0.05},
        "interval": "step",                # or "epoch": when the scheduler steps
        "exclude_bias_and_norm": True,     # the SSL standard, see below
    }

* ``optimizer``: ``{"type": NAME, **kwargs}`` with ``NAME`` from :func:`optimizer_names`
  (torch.optim's and ``LARS``), or a callable factory ``params -> Optimizer`` such as
  ``functools.partial(torch.optim.SGD, lr=0.1)`` or a Hydra node with ``_partial_: true``
  (Hydra instantiates it into exactly that). Default: AdamW, ``lr=1e-3``, ``weight_decay=0.01``.
* ``scheduler``: ``{"type": NAME, **kwargs}`` with ``NAME`` from :func:`scheduler_names`, a
  factory ``optimizer -> scheduler``, or ``None`` for a constant rate. Default: cosine annealing
  over the run. Lengths left out (``T_max``, ``max_steps``, ``total_iters``, ``total_steps``) are
  the run's length counted in ``interval``: optimiser steps for ``"step"``, ``max_epochs`` for
  ``"epoch"``; a float ``warmup_steps`` in ``(0, 1)`` is a fraction of it.
* ``exclude_bias_and_norm``: biases and normalisation weights (every parameter with
  ``ndim <= 1``) go to a parameter group with ``weight_decay=0`` and, with LARS, no trust-ratio
  adaptation (SimCLR, BYOL, Barlow Twins, VICReg all train this way). ``False``: one group.

``optim=None`` means all defaults; ``optim=False`` means no optimiser (evaluation-only modules).

Example:
    >>> optim = {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}, "scheduler": None}
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim import lr_scheduler as torch_schedulers

from ssl_core.optim.lars import LARS
from ssl_core.optim.schedulers import LinearWarmupCosineAnnealingLR

_SPEC_KEYS = ("optimizer", "scheduler", "interval", "exclude_bias_and_norm")
_LENGTH_ARGS = ("T_max", "max_steps", "total_iters", "total_steps")
_DEFAULT_OPTIMIZER: dict[str, Any] = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.01}
_DEFAULT_SCHEDULER: dict[str, Any] = {"type": "CosineAnnealingLR"}
_OURS = {"LARS": LARS, "LinearWarmupCosineAnnealingLR": LinearWarmupCosineAnnealingLR}


def optimizer_names() -> list[str]:
    """Return the optimiser names accepted as ``type`` (torch.optim's and ``LARS``)."""
    names = {
        name
        for name, obj in vars(torch.optim).items()
        if inspect.isclass(obj) and issubclass(obj, Optimizer) and obj is not Optimizer
    }
    return sorted(names | {"LARS"})


def scheduler_names() -> list[str]:
    """Return the scheduler names accepted as ``type`` (torch's and the warm-up cosine)."""
    names = {
        name
        for name, obj in vars(torch_schedulers).items()
        if inspect.isclass(obj)
        and issubclass(obj, torch_schedulers.LRScheduler)
        and name not in ("LRScheduler", "_LRScheduler")
        and not name.startswith("_")
    }
    return sorted(names | {"LinearWarmupCosineAnnealingLR"})


def _factory(kind: str, value: Any) -> Callable[..., Any]:
    """Turn ``{"type": NAME, **kwargs}`` or a callable into a factory."""
    if isinstance(value, Mapping):
        kwargs = {str(k): _plain(v) for k, v in value.items()}
        if "_target_" in kwargs:
            raise TypeError(
                f"The {kind} is an uninstantiated Hydra node ({kwargs['_target_']!r}): build it "
                "with hydra.utils.instantiate (with _partial_: true it becomes the factory), or "
                f"write {{'type': NAME, ...}}."
            )
        if "type" not in kwargs:
            raise ValueError(
                f"An {kind} given as a dict needs a 'type' (a name such as 'SGD'); got keys "
                f"{sorted(kwargs)}."
            )
        name = kwargs.pop("type")
        valid = optimizer_names() if kind == "optimizer" else scheduler_names()
        if name not in valid:
            raise ValueError(
                f"Unknown {kind} {name!r}. Valid names: {', '.join(valid)}; or give a callable "
                "factory (functools.partial or a Hydra node with _partial_: true)."
            )
        namespace = torch.optim if kind == "optimizer" else torch_schedulers
        return functools.partial(_OURS.get(name) or getattr(namespace, name), **kwargs)
    if callable(value):
        return value
    raise TypeError(
        f"Cannot build an {kind} from {value!r}: give {{'type': NAME, **kwargs}} or a callable "
        "factory (functools.partial, or a Hydra node with _partial_: true)."
    )


def _plain(value: Any) -> Any:
    """Convert config containers (e.g. OmegaConf's) to plain dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


@dataclass
class OptimSpec:
    """The parsed ``optim`` argument.

    Attributes:
        optimizer: Factory taking parameter groups and returning an optimiser.
        scheduler: Factory taking the optimiser and returning a scheduler, or ``None``.
        interval: ``"step"`` or ``"epoch"``: when the scheduler steps.
        exclude_bias_and_norm: Whether ``ndim <= 1`` parameters skip weight decay (and LARS's
            adaptation).
        name: Name of the learning-rate entry Lightning logs (``lr-<name>``).
        frequency: The scheduler steps every interval (fixed; Lightning's scheduler config).
        monitor: Always ``None`` (no metric-driven scheduler).
    """

    optimizer: Callable[..., Optimizer]
    scheduler: Callable[..., Any] | None
    interval: str = "step"
    exclude_bias_and_norm: bool = True
    name: str = "optimizer"
    frequency: int = 1
    monitor: str | None = None


def parse_optim(optim: Any) -> list[OptimSpec]:
    """Parse the ``optim`` argument of :class:`ssl_core.Module` (see the module docstring).

    Args:
        optim: ``None`` (defaults), ``False`` (no optimiser) or the spec dict.

    Returns:
        ``[spec]``, or ``[]`` for ``False``.

    Raises:
        ValueError: Unknown optimiser or scheduler names (the valid ones are listed), unknown
            keys, a bad interval.
        TypeError: A value of an unusable type.
    """
    if optim is False:
        return []
    if optim is None:
        optim = {}
    if not isinstance(optim, Mapping):
        raise TypeError(
            f"optim must be None, False or a dict {{'optimizer': ..., 'scheduler': ..., "
            f"'interval': ...}}, got {type(optim).__name__}. An optimiser alone is written "
            "{'optimizer': {'type': 'SGD', 'lr': 0.1}}."
        )
    unknown = sorted(set(map(str, optim)) - set(_SPEC_KEYS))
    if unknown:
        raise ValueError(f"optim has unknown keys {unknown}; valid keys: {', '.join(_SPEC_KEYS)}.")
    interval = str(optim.get("interval", "step"))
    if interval not in ("step", "epoch"):
        raise ValueError(f"optim.interval must be 'step' or 'epoch', got {interval!r}.")
    scheduler = optim.get("scheduler", _DEFAULT_SCHEDULER)
    return [
        OptimSpec(
            optimizer=_factory("optimizer", optim.get("optimizer", _DEFAULT_OPTIMIZER)),
            scheduler=None if scheduler is None else _factory("scheduler", scheduler),
            interval=interval,
            exclude_bias_and_norm=bool(optim.get("exclude_bias_and_norm", True)),
        )
    ]


def parameter_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], exclude_bias_and_norm: bool = True
) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed group and a ``weight_decay=0`` group.

    Args:
        named_parameters: ``module.named_parameters()``; frozen parameters are left out.
        exclude_bias_and_norm: Put every ``ndim <= 1`` parameter (biases, normalisation
            weights) in the second group; ``False`` gives one group.

    Returns:
        The non-empty groups, for ``torch.optim`` constructors; the ``ndim <= 1`` one has
        ``weight_decay=0``.

    Example:
        >>> weight, bias = parameter_groups(torch.nn.Linear(3, 2).named_parameters())
        >>> bias.get("weight_decay"), "weight_decay" in weight
        (0.0, False)
    """
    trainable = [(n, p) for n, p in named_parameters if p.requires_grad]
    if not exclude_bias_and_norm:
        return [{"params": [p for _, p in trainable]}] if trainable else []
    decay = [p for _, p in trainable if p.ndim > 1]
    no_decay = [p for _, p in trainable if p.ndim <= 1]
    groups: list[dict[str, Any]] = []
    if decay:
        groups.append({"params": decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _fill_lengths(factory: Callable[..., Any], length: int | None) -> Any:
    """Fill the length arguments the scheduler factory leaves open with ``length``."""
    target, given = factory, {}
    if isinstance(factory, functools.partial):
        target, given = factory.func, dict(factory.keywords)
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return factory
    extra: dict[str, Any] = {}
    for arg in _LENGTH_ARGS:
        if arg in parameters and arg not in given:
            if length is None or length <= 0:
                raise ValueError(
                    f"Cannot infer the scheduler's {arg} because the training length is unknown; "
                    f"set Trainer(max_epochs=...) or max_steps, or give {arg} explicitly."
                )
            extra[arg] = int(length)
    warmup = given.get("warmup_steps")
    if isinstance(warmup, float) and 0.0 < warmup < 1.0 and length:
        extra["warmup_steps"] = round(warmup * length)
    return functools.partial(factory, **extra) if extra else factory


@dataclass
class BuiltOptimizer:
    """An optimiser built from an :class:`OptimSpec`, with its scheduler."""

    spec: OptimSpec
    optimizer: Optimizer
    scheduler: Any | None


def build_optimizers(
    module: nn.Module,
    specs: Sequence[OptimSpec],
    total_steps: int | None,
    total_epochs: int | None,
) -> list[BuiltOptimizer]:
    """Build the optimiser and scheduler of ``module``.

    Args:
        module: The module to optimise (its trainable parameters).
        specs: The parsed spec (see :func:`parse_optim`): zero or one.
        total_steps: Optimiser steps of the whole run (``trainer.estimated_stepping_batches``).
        total_epochs: Epochs of the whole run (``trainer.max_epochs``), if known.

    Returns:
        One :class:`BuiltOptimizer` per spec.

    Raises:
        ValueError: More than one spec, or nothing to optimise.
        TypeError: The factory did not return a ``torch.optim.Optimizer``.
    """
    if len(specs) > 1:
        raise ValueError("One optimiser per module: pass a single optim spec.")
    built = []
    for spec in specs:
        groups = parameter_groups(module.named_parameters(), spec.exclude_bias_and_norm)
        if not groups:
            raise ValueError(
                "The module has no trainable parameter to optimise; use optim=False for a module "
                "that is not trained."
            )
        optimizer = spec.optimizer(groups)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"The optimiser factory returned {type(optimizer).__name__}, not a "
                "torch.optim.Optimizer."
            )
        if isinstance(optimizer, LARS):
            for group in optimizer.param_groups:  # the spec decides, whatever LARS's default
                group["exclude_bias_and_norm"] = spec.exclude_bias_and_norm
        scheduler = None
        if spec.scheduler is not None:
            total = total_steps if spec.interval == "step" else total_epochs
            if total is None or total <= 0 or math.isinf(total):
                total = None
            scheduler = _fill_lengths(spec.scheduler, total)(optimizer)
        built.append(BuiltOptimizer(spec=spec, optimizer=optimizer, scheduler=scheduler))
    return built
