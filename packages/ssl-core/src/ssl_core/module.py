"""The SSL Module: a user forward ``f(self, batch, stage) -> dict`` bound to a LightningModule."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from ssl_core._imports import import_object
from ssl_core.errors import NonFiniteLossError
from ssl_core.optim.multi import AttachedScheduler, MultiOptimizer
from ssl_core.optim.spec import OptimSpec, build_optimizers, parse_optim
from ssl_core.queues import find_queue

STAGES = ("train", "val", "test", "predict")
_CHECKPOINT_KEY = "ssl_core_batch_transforms"
_RESERVED_ATTRIBUTES = frozenset({"forward", "hparams", "optim", "metrics", "batch_transforms"})

ForwardFn = Callable[[Any, dict[str, Any], str], dict[str, Any]]


def _resolve_forward(forward: Any) -> ForwardFn:
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


def _metric_entry(stage: str, name: str, value: Any) -> tuple[nn.Module, str, str]:
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


def _parse_metrics(metrics: Any) -> dict[str, dict[str, tuple[nn.Module, str, str]]]:
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
        parsed[stage] = {str(n): _metric_entry(stage, str(n), v) for n, v in entries.items()}
    return parsed


def _parse_batch_transforms(batch_transforms: Any) -> dict[str, Callable[[Any], Any]]:
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


class Module(pl.LightningModule):
    """A LightningModule whose steps call one user forward ``f(self, batch, stage) -> dict``.

    Every keyword argument becomes an attribute (``nn.Module`` values are registered as
    submodules, so they are trained and saved). The forward is bound to the instance:
    ``self(batch, stage)`` calls ``forward(self, batch, stage)``.

    Each step returns the forward's output dict, which callbacks receive as ``outputs``.
    ``training_step`` requires a scalar, finite ``"loss"`` (unless ``optim=False``); every scalar
    tensor of the output is logged as ``{stage}/{key}``: per epoch for val/test, and for train per
    step as ``train/{key}`` plus the epoch mean as ``train/{key}_epoch``.

    Optimisation is automatic (Lightning's), so ``accumulate_grad_batches``,
    ``gradient_clip_val``, mixed precision and DDP work unchanged. Several optimisers (``optim``
    given as several specs) are wrapped in one :class:`~ssl_core.optim.MultiOptimizer`: one
    closure (forward + backward) per step, then every optimiser steps; each scheduler steps at
    its own ``interval``, and ``global_step`` counts optimisation steps as with one optimiser.

    Args:
        *args: Not accepted; every argument is a keyword argument.
        forward: ``f(self, batch, stage) -> dict`` or its dotted import path.
        hparams: Hyper-parameters (dict or OmegaConf config), saved with
            ``save_hyperparameters`` and read as ``self.hparams.<name>``.
        optim: The optimiser spec, see :mod:`ssl_core.optim.spec`. ``None`` means AdamW + cosine
            annealing stepped every step; ``False`` means no optimiser (evaluation-only).
        metrics: torchmetrics per stage, ``{stage: {name: metric}}`` or ``{name: metric}``
            (meaning ``"val"``); a metric may be ``{"metric": m, "preds": key, "target": key}``
            (defaults ``"logits"`` and ``"label"``, looked up in the outputs, then the batch).
            Logged as ``{stage}/{name}`` per epoch.
        batch_transforms: A callable ``batch -> batch`` applied to training batches, or a dict
            ``{stage: callable}``, run at the start of each step (on the batch's device).
            A transform's ``state_dict``/``load_state_dict`` is saved in checkpoints.
        channels_last: Convert the module and 4-D ``batch["image"]`` tensors to channels-last.
        compile_modules: Names of submodules to compile in place with ``torch.compile`` at
            setup, or a dict ``{name: compile kwargs}``.
        **kwargs: Submodules (``backbone=...``, ``projector=...``) and other attributes.

    Raises:
        TypeError: Positional arguments, no forward, or an attribute name that clashes with
            LightningModule's.

    Example:
        >>> def forward(self, batch, stage):
        ...     out = {"embedding": self.backbone(batch["image"])}
        ...     if stage == "train":
        ...         out["loss"] = out["embedding"].pow(2).mean()
        ...     return out
        >>> module = Module(forward=forward, backbone=torch.nn.Flatten())
    """

    def __init__(
        self,
        *args: Any,
        forward: ForwardFn | str | None = None,
        hparams: Mapping[str, Any] | None = None,
        optim: Any = None,
        metrics: Any = None,
        batch_transforms: Any = None,
        channels_last: bool = False,
        compile_modules: Any = None,
        **kwargs: Any,
    ) -> None:
        if args:
            raise TypeError(
                f"Module takes keyword arguments only, got {len(args)} positional argument(s) "
                f"({', '.join(type(a).__name__ for a in args)}). Name them: "
                "Module(forward=f, backbone=..., projector=...)."
            )
        super().__init__()
        self._forward_fn = _resolve_forward(forward)
        if hparams is not None:
            self.save_hyperparameters(hparams)
        self._optim_specs: list[OptimSpec] = parse_optim(optim)
        self.automatic_optimization = bool(self._optim_specs)
        self._stage_metrics = nn.ModuleDict()
        self._metric_keys: dict[str, dict[str, tuple[str, str]]] = {}
        for stage, entries in _parse_metrics(metrics).items():
            self._stage_metrics[f"{stage}_metrics"] = nn.ModuleDict(
                {name: metric for name, (metric, _, _) in entries.items()}
            )
            self._metric_keys[stage] = {n: (p, t) for n, (_, p, t) in entries.items()}
        self._batch_transforms = _parse_batch_transforms(batch_transforms)
        self.channels_last = bool(channels_last)
        if compile_modules is None:
            compile_modules = {}
        elif isinstance(compile_modules, str):
            compile_modules = {compile_modules: {}}
        elif not isinstance(compile_modules, Mapping):
            compile_modules = {str(name): {} for name in compile_modules}
        self._compile_modules = {str(k): dict(v or {}) for k, v in compile_modules.items()}
        self._compiled = False
        for name, value in kwargs.items():
            if name in _RESERVED_ATTRIBUTES or name.startswith("_") or self._taken(name):
                raise TypeError(
                    f"Module(..., {name}=...) clashes with an attribute of the LightningModule; "
                    "rename this keyword argument (e.g. 'my_" + name.lstrip("_") + "')."
                )
            setattr(self, name, value)
        missing = [n for n in self._compile_modules if not isinstance(kwargs.get(n), nn.Module)]
        if missing:
            raise ValueError(
                f"compile_modules names {missing}, which are not submodules given to Module; "
                f"choose among {sorted(k for k, v in kwargs.items() if isinstance(v, nn.Module))}."
            )

    def _taken(self, name: str) -> bool:
        return hasattr(type(self), name) or name in self.__dict__ or name in self._modules

    # ------------------------------------------------------------------ forward and queues
    def forward(self, batch: dict[str, Any], stage: str = "train") -> dict[str, Any]:
        """Call the user forward ``f(self, batch, stage)``."""
        return self._forward_fn(self, batch, stage)

    def get_queue(self, key: str) -> torch.Tensor:
        """Return the queue ``key`` held by a callback of the trainer (see :func:`find_queue`)."""
        return find_queue(self, key)

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        """Apply the speed switches (channels-last, in-place ``torch.compile``)."""
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        if not self._compiled:
            for name, options in self._compile_modules.items():
                getattr(self, name).compile(**options)
            self._compiled = True

    def on_fit_start(self) -> None:
        """Refuse a fit that could never end: without an optimiser ``global_step`` stays 0."""
        trainer = self.trainer
        if not self._optim_specs and trainer.max_epochs in (None, -1):
            raise ValueError(
                "This Module has optim=False, so no optimiser step is taken and "
                "trainer.global_step never advances: Trainer(max_steps=...) would never stop. "
                "Bound the run with Trainer(max_epochs=...) (and limit_train_batches), or use "
                "trainer.validate/test/predict for evaluation."
            )

    def apply_batch_transforms(self, batch: Any, stage: str) -> Any:
        """Apply the stage's batch transform (on the batch's device) and channels-last.

        Called at the start of every step rather than in ``on_after_batch_transfer``, which
        belongs to the DataModule (``ssl_data.DataModule`` applies the data's views there).
        """
        transform = self._batch_transforms.get(stage)
        if transform is not None:
            new = transform(batch)
            if isinstance(batch, dict) and isinstance(new, Mapping) and new is not batch:
                # in place, so callbacks' on_*_batch_end receive the transformed batch
                batch.clear()
                batch.update(new)
            else:
                batch = new
        if self.channels_last and isinstance(batch, Mapping):
            image = batch.get("image")
            if isinstance(image, torch.Tensor) and image.ndim == 4:
                batch["image"] = image.contiguous(memory_format=torch.channels_last)
        return batch

    # ------------------------------------------------------------------ steps
    def _run(self, batch: Any, stage: str) -> dict[str, Any]:
        batch = self.apply_batch_transforms(batch, stage)
        out = self(batch, stage)
        if not isinstance(out, Mapping):
            raise TypeError(
                f"The forward returned {type(out).__name__} in stage {stage!r}; it must return a "
                "dict such as {'loss': loss, 'embedding': features} (or the batch with keys added)."
            )
        return out  # type: ignore[return-value]

    def _check_loss(self, out: Mapping[str, Any]) -> torch.Tensor | None:
        if "loss" not in out:
            if not self.automatic_optimization:
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
            trainer = self._trainer
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

    def _log_outputs(self, out: Mapping[str, Any], batch: Any, stage: str) -> None:
        sync = self._trainer is not None and self.trainer.world_size > 1
        batch_size = self._batch_size(batch)
        for key, value in out.items():
            if not (isinstance(value, torch.Tensor) and value.ndim == 0) or value.is_complex():
                continue
            value = value.detach().float()
            if stage == "train":
                # Exact key per step (what progress bars and step-level monitors read) and the
                # epoch mean under "<key>_epoch" (synced across processes once per epoch).
                self.log(
                    f"train/{key}",
                    value,
                    on_step=True,
                    on_epoch=False,
                    prog_bar=key == "loss",
                    batch_size=batch_size,
                )
                self.log(
                    f"train/{key}_epoch",
                    value,
                    on_step=False,
                    on_epoch=True,
                    sync_dist=sync,
                    batch_size=batch_size,
                )
            else:
                self.log(
                    f"{stage}/{key}",
                    value,
                    on_step=False,
                    on_epoch=True,
                    sync_dist=sync,
                    batch_size=batch_size,
                )
        keys = self._metric_keys.get(stage)
        if not keys:
            return
        metrics = self._stage_metrics[f"{stage}_metrics"]
        for name, (preds_key, target_key) in keys.items():
            preds = self._lookup(out, batch, preds_key, stage, name)
            target = self._lookup(out, batch, target_key, stage, name)
            metric = metrics[name]
            metric.update(preds.detach(), target.detach())
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True)

    @staticmethod
    def _batch_size(batch: Any) -> int | None:
        if isinstance(batch, Mapping):
            image = batch.get("image")
            if isinstance(image, torch.Tensor) and image.ndim > 0:
                return int(image.shape[0])
        return None

    @staticmethod
    def _lookup(out: Mapping[str, Any], batch: Any, key: str, stage: str, name: str) -> Any:
        if key in out:
            return out[key]
        if isinstance(batch, Mapping) and key in batch:
            return batch[key]
        raise KeyError(
            f"Metric {stage}/{name} reads {key!r}, which is neither in the forward's outputs "
            f"({sorted(map(str, out))}) nor in the batch. Return it from the forward or set "
            "{'metric': m, 'preds': ..., 'target': ...}."
        )

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """Run the forward with ``stage="train"``; return its outputs (with ``"loss"``)."""
        out = self._run(batch, "train")
        self._check_loss(out)
        self._log_outputs(out, batch, "train")
        return out  # type: ignore[return-value]

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Run the forward with ``stage="val"``; return its outputs."""
        out = self._run(batch, "val")
        self._log_outputs(out, batch, "val")
        return out

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Run the forward with ``stage="test"``; return its outputs."""
        out = self._run(batch, "test")
        self._log_outputs(out, batch, "test")
        return out

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Run the forward with ``stage="predict"``; return its outputs."""
        return self._run(batch, "predict")

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        """Build the optimisers and schedulers of the ``optim`` spec (see class docstring)."""
        if not self._optim_specs:
            return None
        trainer = self._trainer
        total_steps = total_epochs = None
        if trainer is not None:
            estimated = trainer.estimated_stepping_batches
            total_steps = None if math.isinf(estimated) else int(estimated)
            total_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
        built = build_optimizers(self, self._optim_specs, total_steps, total_epochs)
        if len(built) == 1:
            optimizer, schedulers = built[0].optimizer, [built[0].scheduler]
        else:
            optimizer = MultiOptimizer(
                [b.optimizer for b in built], names=[b.spec.name for b in built]
            )
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

    def lr_scheduler_step(self, scheduler: Any, metric: Any | None) -> None:
        """Step a scheduler (also the per-optimiser schedulers of several optimisers)."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the random state of the batch transforms that have one."""
        states = {
            stage: transform.state_dict()
            for stage, transform in self._batch_transforms.items()
            if callable(getattr(transform, "state_dict", None))
            and callable(getattr(transform, "load_state_dict", None))
        }
        if states:
            checkpoint[_CHECKPOINT_KEY] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the batch transforms' states saved by :meth:`on_save_checkpoint`."""
        for stage, state in checkpoint.get(_CHECKPOINT_KEY, {}).items():
            transform = self._batch_transforms.get(stage)
            if transform is not None and callable(getattr(transform, "load_state_dict", None)):
                transform.load_state_dict(state)
