"""The app's own Lightning callbacks: resumable state, last checkpoint, throughput, history."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


class RNGStateCallback(pl.Callback):
    """Save and restore the torch (CPU and CUDA), numpy and python RNG states in checkpoints.

    The states are those of the process that writes the checkpoint (rank 0 under DDP); a resumed
    run continues the random streams exactly where the checkpoint left them.
    """

    @property
    def state_key(self) -> str:
        """Checkpoint key."""
        return "RNGState"

    def state_dict(self) -> dict[str, Any]:
        """Return the current RNG states."""
        kind, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]  # noqa: NPY002
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            # plain types only, so the checkpoint also loads with torch.load(weights_only=True)
            "numpy": [
                str(kind),
                torch.from_numpy(np.asarray(keys).copy()),
                int(pos),
                int(has_gauss),
                float(cached),
            ],
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore RNG states saved by :meth:`state_dict`."""
        torch.set_rng_state(state_dict["torch"])
        kind, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state(  # noqa: NPY002
            (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)
        )
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class LastCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` keeping one ``last.ckpt``: every N steps and at epoch ends.

    The built-in's step and epoch triggers are mutually exclusive and its ``save_last`` only
    follows a top-k save, so this subclass adds the save at every epoch end (after validation)
    and skips the step save on an epoch's last batch, which that epoch-end save replaces.

    Args:
        dirpath: The checkpoint directory (``last.ckpt`` is written there).
        every_n_steps: Step interval (``None`` or 0: only at epoch ends).
    """

    def __init__(self, dirpath: str | Path, every_n_steps: int | None = None) -> None:
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_steps or 0,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Save every ``every_n_steps`` steps, except on an epoch's last batch."""
        if not trainer.is_last_batch:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Save ``last.ckpt`` at the end of every epoch (after validation)."""
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class ThroughputMonitor(pl.Callback):
    """Measure training throughput in source images per second (views not counted twice).

    Lightning's ``ThroughputMonitor`` counts rows (every view), logs a windowed rate to the
    loggers only and synchronises CUDA each step; this one shows images/s in the progress bar
    and reports the run's mean for the summary.

    Logs ``perf/images_per_s`` to the progress bar at the first step and every
    ``log_every_n_steps`` steps (the mean over the steps since the last log);
    :attr:`images_per_s` is the average over all timed steps (the first step of each fit, which
    includes warm-up, is left out when there are others). Source images are counted on the
    device (distinct ``sample_idx``) and read only when logging, so steps never wait for the GPU.
    """

    def __init__(self) -> None:
        self.views = 0
        self.seconds = 0.0
        self._images: torch.Tensor | int = 0
        self._start: float | None = None
        self._first = True
        self._logged_images: torch.Tensor | int = 0
        self._logged_seconds = 0.0

    @property
    def images(self) -> int:
        """Source images counted over the timed steps (reads the device)."""
        return int(self._images)

    @property
    def images_per_s(self) -> float:
        """Average source images per second."""
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    @property
    def views_per_s(self) -> float:
        """Average augmented views (rows) per second."""
        return self.views / self.seconds if self.seconds > 0 else float("nan")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the clock; each step is timed from the end of the previous one.

        Timing end to end (rather than from ``on_train_batch_start``) counts the batch fetch, the
        device transfer and the batched augmentation in ``on_after_batch_transfer``, which
        Lightning runs before ``on_train_batch_start``.
        """
        self._start = time.perf_counter()

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Stop the clock, count the step's images, log at log steps and restart the clock."""
        if self._start is None or not isinstance(batch, dict) or "image" not in batch:
            self._start = time.perf_counter()
            return
        elapsed = time.perf_counter() - self._start
        rows = int(batch["image"].shape[0])
        ids = batch.get("sample_idx")
        images = _distinct_count(ids) if isinstance(ids, torch.Tensor) else rows
        if self._first:
            self._first = False
            interval_images, interval_seconds = images, elapsed
        else:
            self._images = self._images + images
            self.views += rows
            self.seconds += elapsed
            interval_images = self._images - self._logged_images
            interval_seconds = self.seconds - self._logged_seconds
        step, every = trainer.global_step, trainer.log_every_n_steps
        if (step == 1 or (every > 0 and step % every == 0)) and interval_seconds > 0:
            rate = float(interval_images) / interval_seconds
            self._logged_images, self._logged_seconds = self._images, self.seconds
            # a host tensor: Lightning reads progress-bar values after every batch
            pl_module.log(
                "perf/images_per_s",
                torch.tensor(rate),
                prog_bar=True,
                on_step=True,
                on_epoch=False,
                batch_size=rows,
            )
        self._start = time.perf_counter()


def _distinct_count(ids: torch.Tensor) -> torch.Tensor:
    """Number of distinct values of ``ids`` as a device tensor (``torch.unique`` reads the host)."""
    ordered = ids.reshape(-1).sort().values
    return (ordered[1:] != ordered[:-1]).sum() + 1


class MetricsHistory(pl.Callback):
    """Record every scalar metric at the end of each training epoch (kept across resumes)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []

    @property
    def state_key(self) -> str:
        """Checkpoint key."""
        return "MetricsHistory"

    def state_dict(self) -> dict[str, Any]:
        """Return the history."""
        return {"epochs": list(self.epochs)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the history."""
        self.epochs = list(state_dict["epochs"])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Append this epoch's scalar metrics."""
        row: dict[str, float] = {"epoch": float(trainer.current_epoch)}
        for key, value in trainer.callback_metrics.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                row[key] = float(value)
            elif isinstance(value, int | float):
                row[key] = float(value)
        self.epochs = [r for r in self.epochs if r["epoch"] != row["epoch"]] + [row]


class SigkillAtStep(pl.Callback):
    """Test hook: kill this process with SIGKILL right after optimiser step ``step``.

    Crash-recovery tests set the environment variable ``SSL_TRAIN_TEST_SIGKILL_AT_STEP=N``
    (not a config key, so it is never saved with a run); nothing is flushed or saved.

    Args:
        step: The global step after which to die.
    """

    def __init__(self, step: int) -> None:
        self.step = int(step)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Die at the configured step."""
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
