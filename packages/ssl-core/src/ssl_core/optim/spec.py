"""Parsing of the ``optim`` argument of :class:`ssl_core.Module` into optimisers and schedulers.

Accepted forms of ``optim``:

* ``None``: AdamW (``lr=1e-3``, ``weight_decay=0.01``) and cosine annealing over
  ``trainer.estimated_stepping_batches``, stepped every optimiser step.
* ``False``: no optimiser (evaluation-only modules).
* An optimiser: a name (``"SGD"``, ``"LARS"``), a dotted path, a class, a ``functools.partial``
  or any callable taking the parameters, a ``{"type": name, **kwargs}`` dict or a Hydra node
  ``{"_target_": path, **kwargs}``. The scheduler is then the default cosine annealing.
* A spec dict ``{"optimizer": ..., "scheduler": ..., "interval": "step" | "epoch",
  "frequency": 1, "modules": regex, "monitor": key}``. ``scheduler`` takes the same forms as an
  optimiser (called with the optimiser instead of parameters); leave it out for cosine annealing,
  set it to ``None``/``"none"`` for a constant rate. Lengths left out (``T_max``, ``max_steps``,
  ``total_iters``, ``total_steps``) are filled with the training length counted in the
  scheduler's ``interval``: optimiser steps for ``"step"``, ``trainer.max_epochs`` for
  ``"epoch"``; a float ``warmup_steps`` in ``(0, 1)`` is a fraction of that length.
* Several optimisers: a dict ``{name: spec}`` or a list of specs. ``modules`` is a regular
  expression that must fully match the qualified name of a submodule (``"predictor"``,
  ``"backbone|projector"``) or of a parameter; each parameter goes to the first spec that
  selects it, and a spec without ``modules`` takes the parameters no other spec selected.

Example:
    >>> optim = {
    ...     "main": {"modules": "backbone|projector", "optimizer": {"type": "LARS", "lr": 0.3}},
    ...     "predictor": {"modules": "predictor", "optimizer": {"type": "SGD", "lr": 3.0}},
    ... }
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim import lr_scheduler as torch_schedulers

from ssl_core._imports import import_object
from ssl_core.optim.lars import LARS
from ssl_core.optim.schedulers import LinearWarmupCosineAnnealingLR

_SPEC_KEYS = ("optimizer", "scheduler", "interval", "frequency", "modules", "monitor", "name")
_LENGTH_ARGS = ("T_max", "max_steps", "total_iters", "total_steps")
_NO_SCHEDULER = ("none", "constant")
_DEFAULT_OPTIMIZER: dict[str, Any] = {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.01}
_DEFAULT_SCHEDULER = "CosineAnnealingLR"


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
        and (issubclass(obj, torch_schedulers.LRScheduler) or name == "ReduceLROnPlateau")
        and name not in ("LRScheduler", "_LRScheduler")
        and not name.startswith("_")
    }
    return sorted(names | {"LinearWarmupCosineAnnealingLR"})


def _named(kind: str, name: str) -> Any:
    local = {"LARS": LARS, "LinearWarmupCosineAnnealingLR": LinearWarmupCosineAnnealingLR}
    valid = optimizer_names() if kind == "optimizer" else scheduler_names()
    namespace = torch.optim if kind == "optimizer" else torch_schedulers
    if name in valid:
        return local.get(name) or getattr(namespace, name)
    folded = [v for v in valid if v.lower() == name.lower()]
    if len(folded) == 1:
        return local.get(folded[0]) or getattr(namespace, folded[0])
    if "." in name or ":" in name:
        return import_object(name)
    raise ValueError(
        f"Unknown {kind} {name!r}. Valid names: {', '.join(valid)}; or give a dotted path "
        "('package.module.Class'), a class or a functools.partial."
    )


def _factory(kind: str, value: Any) -> Callable[..., Any]:
    """Turn a name, class, partial, ``{"type": ...}`` or ``{"_target_": ...}`` into a factory."""
    if isinstance(value, str):
        return _named(kind, value)
    if isinstance(value, Mapping):
        kwargs = {str(k): _plain(v) for k, v in value.items()}
        if "_target_" in kwargs:
            target = kwargs.pop("_target_")
            kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
        elif "type" in kwargs:
            target = kwargs.pop("type")
        else:
            raise ValueError(
                f"An {kind} given as a dict needs a 'type' (a name such as 'SGD') or a Hydra "
                f"'_target_' key; got keys {sorted(kwargs)}."
            )
        cls = _named(kind, target) if isinstance(target, str) else target
        return functools.partial(cls, **kwargs)
    if callable(value):
        return value
    raise TypeError(
        f"Cannot build an {kind} from {value!r}: give a name, a class, a functools.partial, a "
        "{'type': ..., **kwargs} dict or a Hydra {'_target_': ...} node."
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
    """One optimiser of a module, as parsed from the ``optim`` argument.

    Attributes:
        name: The spec's name (its key when several are given).
        optimizer: Callable taking the parameters (or parameter groups) and returning an optimiser.
        scheduler: Callable taking the optimiser and returning a scheduler, or ``None``.
        interval: ``"step"`` or ``"epoch"``: when the scheduler steps.
        frequency: The scheduler steps every ``frequency`` intervals.
        modules: Regular expression selecting the parameters, or ``None`` for the rest.
        monitor: Logged key fed to a ``ReduceLROnPlateau`` scheduler.
    """

    name: str
    optimizer: Callable[..., Optimizer]
    scheduler: Callable[..., Any] | None
    interval: str = "step"
    frequency: int = 1
    modules: str | None = None
    monitor: str | None = None


def _is_optimizer_like(value: Any) -> bool:
    if isinstance(value, str) or (callable(value) and not isinstance(value, Mapping)):
        return True
    return isinstance(value, Mapping) and ("_target_" in value or "type" in value)


def _parse_one(name: str, spec: Any) -> OptimSpec:
    if _is_optimizer_like(spec):
        spec = {"optimizer": spec}
    if not isinstance(spec, Mapping):
        raise TypeError(f"optim spec {name!r} must be a dict, got {type(spec).__name__}.")
    unknown = sorted(set(map(str, spec)) - set(_SPEC_KEYS))
    if unknown:
        raise ValueError(
            f"optim spec {name!r} has unknown keys {unknown}; valid keys: {', '.join(_SPEC_KEYS)}."
        )
    interval = str(spec.get("interval", "step"))
    if interval not in ("step", "epoch"):
        raise ValueError(
            f"optim spec {name!r}: interval must be 'step' or 'epoch', got {interval!r}."
        )
    frequency = int(spec.get("frequency", 1))
    if frequency < 1:
        raise ValueError(f"optim spec {name!r}: frequency must be >= 1, got {frequency}.")
    scheduler_value = spec.get("scheduler", _DEFAULT_SCHEDULER)
    if scheduler_value is None or scheduler_value is False:
        scheduler = None
    elif isinstance(scheduler_value, str) and scheduler_value.lower() in _NO_SCHEDULER:
        scheduler = None
    else:
        scheduler = _factory("scheduler", scheduler_value)
    modules = spec.get("modules")
    if modules is not None:
        try:
            re.compile(str(modules))
        except re.error as error:
            raise ValueError(
                f"optim spec {name!r}: modules {modules!r} is not a valid regular expression "
                f"({error})."
            ) from None
    return OptimSpec(
        name=str(spec.get("name", name)),
        optimizer=_factory("optimizer", spec.get("optimizer", _DEFAULT_OPTIMIZER)),
        scheduler=scheduler,
        interval=interval,
        frequency=frequency,
        modules=None if modules is None else str(modules),
        monitor=spec.get("monitor"),
    )


def parse_optim(optim: Any) -> list[OptimSpec]:
    """Parse the ``optim`` argument of :class:`ssl_core.Module`.

    Args:
        optim: ``None`` (AdamW + cosine), ``False`` (no optimiser), an optimiser, a spec dict,
            a dict of named specs or a list of specs; see the module docstring.

    Returns:
        One :class:`OptimSpec` per optimiser (empty for ``False``).

    Raises:
        ValueError: Unknown optimiser or scheduler names (the valid ones are listed), unknown
            spec keys, bad intervals or regexes.
        TypeError: A spec of an unusable type.
    """
    if optim is False:
        return []
    if optim is None:
        return [_parse_one("optimizer", {"optimizer": _DEFAULT_OPTIMIZER})]
    if _is_optimizer_like(optim) or (isinstance(optim, Mapping) and "optimizer" in optim):
        return [_parse_one("optimizer", optim)]
    if isinstance(optim, Mapping):
        if not optim:
            raise ValueError("optim is an empty dict; pass None for the default or False for none.")
        return [_parse_one(str(name), spec) for name, spec in optim.items()]
    if isinstance(optim, Sequence) and not isinstance(optim, str | bytes):
        if not optim:
            raise ValueError("optim is an empty list; pass None for the default or False for none.")
        return [_parse_one(f"optimizer{i}", spec) for i, spec in enumerate(optim)]
    raise TypeError(
        f"Cannot use optim={optim!r}: pass None (AdamW + cosine), False (no optimiser), an "
        "optimiser class/partial/name, a spec dict {'optimizer': ..., 'scheduler': ...} or "
        "several specs."
    )


def _selected(pattern: str, param_name: str) -> bool:
    parts = param_name.split(".")
    candidates = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(re.fullmatch(pattern, c) for c in candidates)


def assign_parameters(
    module: nn.Module, specs: Sequence[OptimSpec]
) -> list[list[tuple[str, nn.Parameter]]]:
    """Split the trainable parameters of ``module`` among ``specs``.

    Args:
        module: The module whose ``requires_grad`` parameters are optimised.
        specs: The parsed specs.

    Returns:
        The ``(name, parameter)`` pairs of each spec, in the order of ``specs``.

    Raises:
        ValueError: A regex selects no trainable parameter (the module names are listed), or a
            spec gets no parameter at all.
    """
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    taken: set[int] = set()
    groups: list[list[tuple[str, nn.Parameter]]] = [[] for _ in specs]
    for i, spec in enumerate(specs):
        if spec.modules is None:
            continue
        groups[i] = [(n, p) for n, p in named if id(p) not in taken and _selected(spec.modules, n)]
        if not groups[i]:
            top = sorted({n.split(".")[0] for n, _ in named})
            raise ValueError(
                f"optim spec {spec.name!r}: modules regex {spec.modules!r} matches no trainable "
                f"parameter (it must fully match a submodule name such as {top}, or a parameter "
                "name). Fix the regex."
            )
        taken.update(id(p) for _, p in groups[i])
    rest = [(n, p) for n, p in named if id(p) not in taken]
    catch_all = [i for i, spec in enumerate(specs) if spec.modules is None]
    if len(catch_all) > 1:
        raise ValueError(
            f"optim specs {[specs[i].name for i in catch_all]} all lack 'modules'; only one spec "
            "may take the remaining parameters. Give the others a 'modules' regex."
        )
    if catch_all:
        groups[catch_all[0]] = rest
        if not rest and specs:
            raise ValueError(
                f"optim spec {specs[catch_all[0]].name!r} has no 'modules' and no trainable "
                "parameter is left for it; remove it or give it a regex."
            )
    elif rest:
        warnings.warn(
            f"{len(rest)} trainable parameters are selected by no optimiser and will not be "
            f"trained (e.g. {[n for n, _ in rest[:5]]}); add a spec without 'modules' or freeze "
            "them with requires_grad_(False).",
            stacklevel=2,
        )
    return groups


def _fill_lengths(factory: Callable[..., Any], length: int | None, spec_name: str) -> Any:
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
                    f"optim spec {spec_name!r}: cannot infer the scheduler's {arg} because the "
                    "training length is unknown; set Trainer(max_epochs=...) or max_steps, or "
                    f"give {arg} explicitly."
                )
            extra[arg] = int(length)
    warmup = given.get("warmup_steps")
    if isinstance(warmup, float) and 0.0 < warmup < 1.0 and length:
        extra["warmup_steps"] = round(warmup * length)
    return functools.partial(factory, **extra) if extra else factory


@dataclass
class BuiltOptimizer:
    """An optimiser built from an :class:`OptimSpec`, with its scheduler configuration."""

    spec: OptimSpec
    optimizer: Optimizer
    scheduler: Any | None


def build_optimizers(
    module: nn.Module,
    specs: Sequence[OptimSpec],
    total_steps: int | None,
    total_epochs: int | None,
) -> list[BuiltOptimizer]:
    """Build the optimisers and schedulers of ``module``.

    Args:
        module: The module to optimise.
        specs: The parsed specs (see :func:`parse_optim`).
        total_steps: Optimiser steps of the whole run (``trainer.estimated_stepping_batches``).
        total_epochs: Epochs of the whole run (``trainer.max_epochs``), if known.

    Returns:
        One :class:`BuiltOptimizer` per spec.
    """
    built = []
    for spec, named in zip(specs, assign_parameters(module, specs), strict=True):
        optimizer = spec.optimizer([p for _, p in named])
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"optim spec {spec.name!r}: the optimiser factory returned "
                f"{type(optimizer).__name__}, not a torch.optim.Optimizer."
            )
        scheduler = None
        if spec.scheduler is not None:
            total = total_steps if spec.interval == "step" else total_epochs
            if total is not None and total > 0 and not math.isinf(total):
                total = max(1, int(total) // spec.frequency)
            else:
                total = None
            scheduler = _fill_lengths(spec.scheduler, total, spec.name)(optimizer)
        built.append(BuiltOptimizer(spec=spec, optimizer=optimizer, scheduler=scheduler))
    return built
