"""The SSL Module: a user forward ``f(self, batch, stage) -> dict`` bound to a LightningModule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from ssl_core._deferred import NON_FINITE_LOSS, DeferredChecks
from ssl_core._loss_check import check_loss, failure_error
from ssl_core._module_args import (
    STAGES,
    ForwardFn,
    parse_batch_transforms,
    parse_compile_modules,
    parse_metrics,
    resolve_forward,
)
from ssl_core._module_logging import log_outputs
from ssl_core._module_optim import configure_optimizers
from ssl_core.optim.spec import OptimSpec, parse_optim
from ssl_core.queues import find_queue

__all__ = ["STAGES", "Module"]

_CHECKPOINT_KEY = "ssl_core_batch_transforms"
_RESERVED_ATTRIBUTES = frozenset({"forward", "hparams", "optim", "metrics", "batch_transforms"})


class Module(pl.LightningModule):
    """A LightningModule whose steps call one user forward ``f(self, batch, stage) -> dict``.

    Every keyword argument becomes an attribute (``nn.Module`` values are registered as
    submodules, so they are trained and saved). The forward is bound to the instance:
    ``self(batch, stage)`` calls ``forward(self, batch, stage)``.

    Each step returns the forward's output dict, which callbacks receive as ``outputs``.
    ``training_step`` requires a scalar, finite ``"loss"`` (unless ``optim=False``); every scalar
    tensor of the output is logged as ``{stage}/{key}``: per epoch for val/test, and for train per
    step as ``train/{key}`` plus the epoch mean as ``train/{key}_epoch``; the progress bar's
    ``loss`` is refreshed in the batches Lightning logs.

    A training step reads nothing on the host (no GPU stall): the loss's finiteness and the
    forwards' :meth:`defer_check` conditions stay on the device until the next check point
    (the first batch, every ``log_every_n_steps`` steps, epoch ends, checkpoint saves), which
    raises :class:`~ssl_core.NonFiniteLossError` naming the first non-finite step; no
    checkpoint is written after that step.

    Optimisation is automatic (Lightning's), so ``accumulate_grad_batches``,
    ``gradient_clip_val``, mixed precision and DDP work unchanged.

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
        self._forward_fn = resolve_forward(forward)
        if hparams is not None:
            self.save_hyperparameters(hparams)
        self._optim_specs: list[OptimSpec] = parse_optim(optim)
        self.automatic_optimization = bool(self._optim_specs)
        self._stage_metrics = nn.ModuleDict()
        self._metric_keys: dict[str, dict[str, tuple[str, str]]] = {}
        for stage, entries in parse_metrics(metrics).items():
            self._stage_metrics[f"{stage}_metrics"] = nn.ModuleDict(
                {name: metric for name, (metric, _, _) in entries.items()}
            )
            self._metric_keys[stage] = {n: (p, t) for n, (_, p, t) in entries.items()}
        self._batch_transforms = parse_batch_transforms(batch_transforms)
        self.channels_last = bool(channels_last)
        self._compile_modules = parse_compile_modules(compile_modules)
        self._compiled = False
        self._deferred = DeferredChecks()
        self._checked_at = -1
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

    def _log_outputs(self, out: Mapping[str, Any], batch: Any, stage: str) -> None:
        modules = self._stage_metrics[f"{stage}_metrics"] if stage in self._metric_keys else None
        log_outputs(
            self, out, batch, stage, self._metric_keys.get(stage), modules, self._is_log_step()
        )

    def _is_log_step(self) -> bool:
        """Whether this training batch is one Lightning logs (and the first one)."""
        trainer = self._trainer
        if trainer is None or not trainer.training:
            return False
        every = trainer.log_every_n_steps
        step = trainer.global_step
        return step == 0 or (every > 0 and (step + 1) % every == 0)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        """Run the forward with ``stage="train"``; return its outputs (with ``"loss"``)."""
        out = self._run(batch, "train")
        loss = check_loss(out, required=self.automatic_optimization)
        if loss is not None:
            self._deferred.record(
                NON_FINITE_LOSS, ~torch.isfinite(loss.detach()), self._step(), loss
            )
        self._log_outputs(out, batch, "train")
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ deferred checks
    def defer_check(self, failed: torch.Tensor, message: str) -> None:
        """Record a check made on the device; raise ``ValueError(message)`` at the next check point.

        A forward calls this instead of ``if bool(failed): raise ...``, which would make the
        host wait for the device every step. Check points: the first training batch, every
        ``log_every_n_steps`` optimiser steps, each epoch end, before each checkpoint save and
        at the end of training; the error names the first failing global step.

        Args:
            failed: 0-d boolean tensor, ``True`` when the check failed.
            message: The error message (what is wrong and how to fix it).
        """
        self._deferred.record(message, failed, self._step())

    def _step(self) -> int:
        return self._trainer.global_step if self._trainer is not None else -1

    def _raise_failed_checks(self) -> None:
        failure = self._deferred.first_failure()
        if failure is not None:
            raise failure_error(self, failure)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Read the deferred checks at the first batch and every ``log_every_n_steps`` steps."""
        trainer = self.trainer
        step, every = trainer.global_step, trainer.log_every_n_steps
        due = step == 1 or (every > 0 and step % every == 0)
        if due and step != self._checked_at:
            self._checked_at = step
            self._raise_failed_checks()

    def on_train_epoch_end(self) -> None:
        """Read the deferred checks at every epoch end."""
        self._raise_failed_checks()

    def on_train_end(self) -> None:
        """Read the deferred checks once more when training ends."""
        self._raise_failed_checks()

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
        return configure_optimizers(self, self._optim_specs)

    def lr_scheduler_step(self, scheduler: Any, metric: Any | None) -> None:
        """Step a scheduler (also the per-optimiser schedulers of several optimisers)."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the random state of the batch transforms that have one.

        The deferred checks are read first: no checkpoint is written after a failed one (a
        NaN loss), so the last checkpoint on disk is the last good one.
        """
        if self._trainer is not None:
            self._raise_failed_checks()
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
