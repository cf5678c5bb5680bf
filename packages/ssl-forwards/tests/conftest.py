"""Fixtures for the ssl_forwards tests: flat multi-view batches and fast CPU trainers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import pytest
import torch


def _flat_batch(
    n: int = 8,
    views: int = 2,
    dim: int = 6,
    seed: int = 0,
    label: bool = True,
    shuffle: bool = False,
) -> dict[str, torch.Tensor]:
    """A flat multi-view batch: ``N*V`` rows, view-major unless ``shuffle``.

    ``sample_idx`` values are distinct but not 0..N-1 (so tests cannot rely on them being
    positions), and views of a sample differ by small noise.
    """
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(n, dim, generator=gen)
    rows = torch.cat([base + 0.1 * torch.randn(n, dim, generator=gen) for _ in range(views)])
    sample_idx = (torch.randperm(n, generator=gen) * 3 + 5).repeat(views)
    batch = {"image": rows, "sample_idx": sample_idx}
    if label:
        batch["label"] = torch.randint(0, 3, (n,), generator=gen).repeat(views)
    if shuffle:
        perm = torch.randperm(n * views, generator=gen)
        batch = {k: v[perm] for k, v in batch.items()}
    return batch


@pytest.fixture
def flat_batch() -> Callable[..., dict[str, torch.Tensor]]:
    return _flat_batch


class OutputRecorder(pl.Callback):
    """Records the output keys (and training losses) that each stage's steps return."""

    def __init__(self) -> None:
        self.keys: dict[str, set[str]] = {}
        self.losses: list[float] = []

    def _record(self, stage: str, outputs: Any) -> None:
        self.keys.setdefault(stage, set()).update(outputs)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._record("train", outputs)
        self.losses.append(float(outputs["loss"]))

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *a) -> None:
        self._record("val", outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *a) -> None:
        self._record("test", outputs)

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *a) -> None:
        self._record("predict", outputs)


@pytest.fixture
def recorder() -> OutputRecorder:
    return OutputRecorder()


def _trainer(**kwargs: Any) -> pl.Trainer:
    options: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    options.update(kwargs)
    return pl.Trainer(**options)


@pytest.fixture
def make_trainer() -> Callable[..., pl.Trainer]:
    return _trainer
