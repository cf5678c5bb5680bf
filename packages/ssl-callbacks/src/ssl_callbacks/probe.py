"""A probe trained online on detached features, with its own optimiser, from callback hooks."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from ssl_callbacks._dist import average_gradients, broadcast_module
from ssl_callbacks._keys import DeferredChecks, check_labels, label_dtype, read_key

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def _default_optimizer(params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-6)


def _infer_num_classes(probe: nn.Module) -> int | None:
    last = [m for m in probe.modules() if isinstance(m, nn.Linear)]
    return last[-1].out_features if last else None


class OnlineProbe(Callback):
    """Train ``probe`` on detached ``input`` features to predict ``target`` during training.

    The probe is never registered on the LightningModule: its parameters are not in the main
    optimiser and the module's forward is untouched. After each training batch
    (``on_train_batch_end``, so after the main optimiser step) the callback runs
    ``probe(outputs[input].detach())``, takes one step of its own optimiser, and logs
    ``train/{name}_loss``. At validation it logs ``val/{name}_top1`` (micro accuracy) and
    ``val/{name}_{key}`` for each extra metric, fed ``(logits, labels)`` and synced across ranks
    by torchmetrics. Its weights, optimiser and scheduler states are in the callback's
    checkpoint state.

    Precision: the probe always runs in float32 with autocast disabled, whatever the trainer's
    precision (features are cast with ``.float()``), so mixed precision never affects it.

    DDP: every rank starts from rank 0's probe and, before each probe step, the gradients are
    averaged over ranks weighted by their rows, i.e. the gradient of the loss on the global batch
    (``loss`` must be a mean over rows, as the default). All ranks then hold the same probe, so
    the checkpoint's single copy (rank 0's) is every rank's and validation metrics (synced by
    torchmetrics) score one probe.

    Bad input: labels outside ``[0, num_classes)`` and NaN/Inf features of training batches are
    recorded on the device and raise at the next validation or epoch end (no device sync per
    training batch); validation batches are checked at once.

    Since it only reads the step's outputs, its result does not depend on where it sits in the
    callback list.

    Args:
        name: Used in logged names and the checkpoint ``state_key``.
        input: Key of the features ``[B, D]`` (outputs first, then batch).
        target: Key of the integer labels ``[B]``.
        probe: The module to train, e.g. ``nn.Linear(D, C)``.
        loss: Loss ``(logits, labels) -> scalar``; default ``nn.CrossEntropyLoss()``.
        optimizer: ``params -> Optimizer``; default ``AdamW(lr=1e-3, weight_decay=1e-6)``.
        scheduler: ``optimizer -> LRScheduler`` stepped after every probe step; default none.
        metrics: Extra validation torchmetrics by name.
        num_classes: Classes for top-1 accuracy; default the ``out_features`` of the probe's last
            ``nn.Linear``.

    Example:
        >>> probe = OnlineProbe("linear", "embedding", "label", probe=nn.Linear(512, 10))
    """

    def __init__(
        self,
        name: str,
        input: str,
        target: str,
        probe: nn.Module,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        metrics: Mapping[str, Metric] | None = None,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        who = f"OnlineProbe({name!r})"
        if not isinstance(probe, nn.Module):
            raise TypeError(f"{who}: probe must be an nn.Module, got {type(probe).__name__}.")
        if not any(p.requires_grad for p in probe.parameters()):
            raise ValueError(
                f"{who}: the probe has no trainable parameters; pass e.g. nn.Linear(D, C)."
            )
        self.name = name
        self.input = input
        self.target = target
        self.probe = probe
        self.loss_fn = loss if loss is not None else nn.CrossEntropyLoss()
        self._optimizer_factory = optimizer or _default_optimizer
        self._scheduler_factory = scheduler
        self.num_classes = num_classes if num_classes is not None else _infer_num_classes(probe)
        if self.num_classes is None:
            raise ValueError(f"{who}: cannot infer num_classes from the probe; pass num_classes=C.")
        self.metrics: dict[str, Metric] = {
            "top1": MulticlassAccuracy(self.num_classes, top_k=1, average="micro")
        }
        self.metrics.update(dict(metrics or {}))
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: Any = None
        self._pending: dict[str, Any] | None = None
        self._val_updates = 0
        self._checks = DeferredChecks()

    @property
    def state_key(self) -> str:
        """Unique per name."""
        return f"OnlineProbe[{self.name}]"

    def _describe(self) -> str:
        return f"OnlineProbe({self.name!r})"

    # ------------------------------------------------------------------ setup
    def _ensure_ready(self, device: torch.device) -> None:
        if next(self.probe.parameters()).device != device:
            self.probe.to(device)
            for metric in self.metrics.values():
                metric.to(device)
        if self.optimizer is None:
            self.optimizer = self._optimizer_factory(self.probe.parameters())
            if self._scheduler_factory is not None:
                self.scheduler = self._scheduler_factory(self.optimizer)
        if self._pending is not None:
            state, self._pending = self._pending, None
            self.probe.load_state_dict(state["probe"])
            self.optimizer.load_state_dict(state["optimizer"])  # casts state to param devices
            if self.scheduler is not None and state.get("scheduler") is not None:
                self.scheduler.load_state_dict(state["scheduler"])

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Move the probe to the module's device and create its optimiser."""
        self._ensure_ready(pl_module.device)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Follow the module to its final device; under DDP start every rank from rank 0's probe."""
        self._ensure_ready(pl_module.device)
        broadcast_module(self.probe, trainer)

    def _inputs(self, outputs: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and flat int64 labels, checked from metadata only (no device sync)."""
        x = read_key(outputs, batch, self.input, self._describe())
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{self._describe()}: {self.input!r} must be a tensor, got {type(x).__name__}."
            )
        y = label_dtype(read_key(outputs, batch, self.target, self._describe()), self._describe())
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{self._describe()}: {self.input!r} has {x.shape[0]} rows but {self.target!r} "
                f"has {y.shape[0]}; both must have one row per sample (view)."
            )
        return x.detach().float(), y

    def _verify(self) -> None:
        self._checks.verify(self._describe(), self.num_classes, self.input)

    # ------------------------------------------------------------------ train
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """One optimiser step of the probe on this batch's detached features (global batch in DDP).

        Label range and finiteness are checked on the device and read at the next validation or
        epoch end; until then out-of-range labels are clamped so a GPU never hits a device assert.
        """
        self._ensure_ready(pl_module.device)
        assert self.optimizer is not None
        x, y = self._inputs(outputs, batch)
        x, y = x.to(pl_module.device), y.to(pl_module.device)
        self._checks.update_labels(y)
        self._checks.update_features(x)
        self.probe.train()
        autocast_off = torch.autocast(device_type=x.device.type, enabled=False)
        with torch.enable_grad(), autocast_off:
            loss = self.loss_fn(self.probe(x), y.clamp(0, self.num_classes - 1))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        average_gradients(self.probe.parameters(), y.shape[0], trainer)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        pl_module.log(
            f"train/{self.name}_loss", loss.detach(), on_step=True, on_epoch=True, batch_size=len(y)
        )

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Raise if a training batch of the epoch had a bad label or a NaN/Inf feature."""
        self._verify()

    # ------------------------------------------------------------------ val
    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Check the training batches seen so far, then reset the metrics."""
        self._verify()
        self._ensure_ready(pl_module.device)
        self._val_updates = 0
        for metric in self.metrics.values():
            metric.reset()

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Score the batch with the probe."""
        x, y = self._inputs(outputs, batch)
        y = check_labels(y, self._describe(), self.num_classes)
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                f"{self._describe()}: the validation features {self.input!r} hold NaN or Inf; "
                "check the model (its training diverged?) or the validation data."
            )
        self.probe.eval()
        with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
            logits = self.probe(x.to(pl_module.device))
        for metric in self.metrics.values():
            metric.update(logits, y.to(logits.device))
        self._val_updates += 1

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log the synced metrics."""
        if self._val_updates == 0 and trainer.world_size == 1:
            return
        for key, metric in self.metrics.items():
            value = metric.compute()
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                pl_module.log(f"val/{self.name}_{key}", value.float(), sync_dist=False)
            metric.reset()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Probe weights, optimiser and scheduler states."""
        if self._pending is not None:
            return copy.deepcopy(self._pending)
        return {
            "probe": {k: v.detach().cpu().clone() for k, v in self.probe.state_dict().items()},
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the probe (applied once its optimiser exists)."""
        if state_dict.get("optimizer") is None:
            self.probe.load_state_dict(state_dict["probe"])
            return
        self._pending = dict(state_dict)
        if self.optimizer is not None:
            self._ensure_ready(next(self.probe.parameters()).device)
