"""Validation of :class:`ssl_core.Module`'s constructor arguments (forward, metrics, transforms)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ssl_core._imports import import_object

STAGES = ("train", "val", "test", "predict")

ForwardFn = Callable[[Any, dict[str, Any], str], dict[str, Any]]


def resolve_forward(forward: Any) -> ForwardFn:
    """Return the forward function, importing a dotted path; raise naming the fix otherwise."""
    if forward is None:
        raise TypeError(
            "Module needs a forward: pass forward=f with f(self, batch, stage) -> dict, or a "
            "dotted import path such as forward='ssl_forwards.simclr_forward'."
        )
    if isinstance(forward, str):
        forward = import_object(forward)
    if not callable(forward):
        raise TypeError(
            f"forward must be a function f(self, batch, stage) -> dict or a dotted import path, "
            f"got {type(forward).__name__}."
        )
    return forward


def metric_entry(stage: str, name: str, value: Any) -> tuple[nn.Module, str, str]:
    """Return ``(metric, preds key, target key)`` for one metrics entry."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"metric", "preds", "target"})
        if "metric" not in value or unknown:
            raise ValueError(
                f"metrics[{stage!r}][{name!r}] must be a torchmetrics Metric or a dict "
                "{'metric': Metric, 'preds': key, 'target': key}; "
                f"got keys {sorted(value)}."
            )
        metric, preds, target = value["metric"], value.get("preds"), value.get("target")
    else:
        metric, preds, target = value, None, None
    if not isinstance(metric, nn.Module):
        raise TypeError(
            f"metrics[{stage!r}][{name!r}] must be a torchmetrics.Metric (an nn.Module with "
            f"update/compute), got {type(metric).__name__}."
        )
    return metric, preds or "logits", target or "label"


def parse_metrics(metrics: Any) -> dict[str, dict[str, tuple[nn.Module, str, str]]]:
    """Normalise ``metrics`` to ``{stage: {name: (metric, preds key, target key)}}``."""
    if metrics is None:
        return {}
    if isinstance(metrics, nn.Module):
        metrics = {"val": {type(metrics).__name__.lower(): metrics}}
    if not isinstance(metrics, Mapping):
        raise TypeError(
            "metrics must be a dict {stage: {name: metric}} or {name: metric} (meaning 'val'), "
            f"got {type(metrics).__name__}."
        )
    if metrics and all(k in STAGES for k in metrics):
        per_stage = metrics
    else:
        per_stage = {"val": metrics}
    parsed: dict[str, dict[str, tuple[nn.Module, str, str]]] = {}
    for stage, entries in per_stage.items():
        if stage == "predict":
            raise ValueError("metrics cannot be computed in the predict stage (nothing is logged).")
        if not isinstance(entries, Mapping):
            raise TypeError(f"metrics[{stage!r}] must be a dict {{name: metric}}.")
        parsed[stage] = {str(n): metric_entry(stage, str(n), v) for n, v in entries.items()}
    return parsed


def parse_batch_transforms(batch_transforms: Any) -> dict[str, Callable[[Any], Any]]:
    """Normalise ``batch_transforms`` to ``{stage: callable}``."""
    if batch_transforms is None:
        return {}
    if isinstance(batch_transforms, Mapping):
        unknown = sorted(set(batch_transforms) - set(STAGES))
        if unknown:
            raise ValueError(
                f"batch_transforms has unknown stages {unknown}; use keys from {list(STAGES)}."
            )
        transforms = {str(k): v for k, v in batch_transforms.items() if v is not None}
    else:
        transforms = {"train": batch_transforms}
    for stage, transform in transforms.items():
        if not callable(transform):
            raise TypeError(
                f"batch_transforms[{stage!r}] must be callable (batch -> batch), "
                f"got {type(transform).__name__}."
            )
    return transforms


def parse_compile_modules(compile_modules: Any) -> dict[str, dict[str, Any]]:
    """Normalise ``compile_modules`` (a name, names, or a dict) to ``{name: kwargs}``."""
    if compile_modules is None:
        return {}
    if isinstance(compile_modules, str):
        compile_modules = {compile_modules: {}}
    elif not isinstance(compile_modules, Mapping):
        compile_modules = {str(name): {} for name in compile_modules}
    return {str(k): dict(v or {}) for k, v in compile_modules.items()}
