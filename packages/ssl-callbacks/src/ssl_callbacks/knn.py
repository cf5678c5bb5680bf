"""k-nearest-neighbour classification of validation embeddings against a bank of training ones.

The search runs where the bank lives (see :mod:`ssl_callbacks.neighbours`): faiss on CPU, faiss's
GPU brute force or an exact torch ``topk`` on CUDA, and approximate faiss indexes
(``"HNSW32"``, ``"IVF1024,Flat"``) for banks of millions. ``benchmarks/knn.py`` measures each
path against the chunked torch brute force used by solo-learn and stable-pretraining.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import faiss
import torch
from lightning.pytorch import LightningModule, Trainer
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from ssl_callbacks._keys import check_labels, label_dtype, read_key
from ssl_callbacks._mirror import BankMirror
from ssl_callbacks.neighbours import (
    BACKENDS,
    DISTANCES,
    Backend,
    Distance,
    build_index,
    faiss_knn,
    fast_bf16,
    resolve_backend,
    search,
    torch_knn,
    weighted_vote,
)
from ssl_callbacks.queue import QueueConsumer, QueueSpec

__all__ = ["OnlineKNN", "build_index", "search", "weighted_vote"]


class OnlineKNN(QueueConsumer):
    """Weighted kNN accuracy of validation embeddings against a queue of training embeddings.

    During training the callback queues ``input`` embeddings and ``target`` labels (gathered
    across ranks, so every rank holds the same bank); its training hook reads nothing back from
    the device. At the start of each validation epoch its search-ready copy of the bank follows
    the queue: only the rows queued since the previous validation are prepared (normalised) and
    written over the oldest. Each validation batch is then searched where the bank lives
    (``backend``, see :func:`ssl_callbacks.neighbours.resolve_backend`) and classified by weighted
    voting of its ``k`` neighbours; top-1/top-5 accuracy (torchmetrics ``MulticlassAccuracy``,
    micro averaged, synced across ranks) is logged as ``val/{name}_top1`` and
    ``val/{name}_top5``, plus ``val/{name}_{key}`` for every extra metric given. A bank with
    fewer than ``k`` rows (early in training) warns and votes with all its rows.

    Args:
        name: Used in logged names and the checkpoint ``state_key``.
        input: Key of the embeddings ``[B, D]`` (outputs first, then batch).
        target: Key of the integer labels ``[B]``.
        queue_length: Bank size (most recent training rows).
        k: Number of neighbours; must be ``<= queue_length``.
        temperature: T of the ``exp(sim / T)`` weights (cosine).
        distance: ``"cosine"`` or ``"euclidean"`` (``1 / d`` weights).
        num_classes: Number of classes; ``None`` infers ``max(bank label) + 1`` each epoch
            (pass it when known).
        metrics: Extra torchmetrics fed ``([B, C] vote shares, labels)``, by name.
        index: faiss ``index_factory`` description; ``"Flat"`` is exact, ``"HNSW32"`` or
            ``"IVF4096,Flat"`` are approximate options (faiss on CPU, built once per validation
            epoch) for banks of millions.
        index_params: faiss ``ParameterSpace`` string for the index, e.g. ``"nprobe=32"``.
        backend: ``"auto"`` (default), ``"faiss"`` or ``"torch"``; every exact path finds the
            same neighbours (ties aside).

    Example:
        >>> knn = OnlineKNN("knn", input="embedding", target="label", queue_length=20000, k=20)
    """

    def __init__(
        self,
        name: str,
        input: str,
        target: str,
        queue_length: int,
        k: int = 20,
        temperature: float = 0.07,
        distance: Distance = "cosine",
        num_classes: int | None = None,
        metrics: Mapping[str, Metric] | None = None,
        index: str = "Flat",
        index_params: str | None = None,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        who = f"OnlineKNN({name!r})"
        if distance not in DISTANCES:
            raise ValueError(f"{who}: distance must be one of {DISTANCES}, got {distance!r}.")
        if backend not in BACKENDS:
            raise ValueError(f"{who}: backend must be one of {BACKENDS}, got {backend!r}.")
        if backend == "torch" and index != "Flat":
            raise ValueError(
                f'{who}: backend="torch" searches exactly; index={index!r} needs '
                'backend="faiss" or "auto" (or index="Flat").'
            )
        if int(queue_length) < 1:
            raise ValueError(f"{who}: queue_length must be >= 1, got {queue_length}.")
        if not 1 <= int(k) <= int(queue_length):
            raise ValueError(
                f"{who}: k={k} is larger than the bank (queue_length={queue_length}); use "
                f"1 <= k <= queue_length, e.g. raise queue_length to at least {k}."
            )
        if not temperature > 0:
            raise ValueError(f"{who}: temperature must be > 0, got {temperature}.")
        if num_classes is not None and int(num_classes) < 2:
            raise ValueError(f"{who}: num_classes must be >= 2 or None, got {num_classes}.")
        if input == target:
            raise ValueError(f"{who}: input and target must be different keys, both are {input!r}.")
        self.name = name
        self.input = input
        self.target = target
        self.queue_length = int(queue_length)
        self.k = int(k)
        self.temperature = float(temperature)
        self.distance: Distance = distance
        self.num_classes = None if num_classes is None else int(num_classes)
        self.extra_metrics = dict(metrics or {})
        self.index = index
        self.index_params = index_params
        self.backend = backend
        self.path: str | None = None  # the resolved search path of the current epoch
        self._mirror = BankMirror(self.queue_length, distance)
        self._faiss_index: faiss.Index | None = None
        self._gpu_resources: Any = None
        self._ready = False
        self._screen_stats: dict[str, int] = {}
        self._classes = 0
        self._metrics: dict[str, Metric] = {}

    @property
    def state_key(self) -> str:
        """Unique per name."""
        return f"OnlineKNN[{self.name}]"

    def _describe(self) -> str:
        return f"OnlineKNN({self.name!r})"

    def queue_specs(self) -> list[QueueSpec]:
        """Embeddings (float32) and labels (int64), gathered across ranks."""
        return [
            QueueSpec(self.input, self.queue_length, None, torch.float32, True),
            QueueSpec(self.target, self.queue_length, (), torch.long, True),
        ]

    # ------------------------------------------------------------------ bank
    def bank(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the current bank ``(embeddings [n, D], labels [n])``, oldest first."""
        feats = self._queue(self.input, self.queue_length)
        labels = self._queue(self.target, self.queue_length)
        n = min(feats.shape[0], labels.shape[0])
        return feats[feats.shape[0] - n :], labels[labels.shape[0] - n :]

    def _check_embedding(self, x: Any) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{self._describe()}: {self.input!r} must be a [B, D] tensor, got {shape}. "
                "Flatten or pool the features in your forward."
            )
        return x

    def _check_bank(self, feats: torch.Tensor, labels: torch.Tensor) -> int:
        """Validate the bank once per epoch (reads it back: validation time); return C."""
        if not bool(torch.isfinite(feats).all()):
            raise ValueError(
                f"{self._describe()}: the bank of training {self.input!r} embeddings holds NaN or "
                "Inf; the model's training diverged (lower the learning rate, clip gradients, "
                "use bf16 instead of fp16) or the data holds NaN."
            )
        labels = check_labels(labels, self._describe() + " bank", self.num_classes)
        return self.num_classes or int(labels.max()) + 1

    def _prepare(self, device: torch.device) -> None:
        """Sync the mirror with the queues and set up the epoch's search path."""
        self.path = resolve_backend(
            self.backend,  # type: ignore[arg-type]
            device,
            self.index,
            self.distance,  # type: ignore[arg-type]
        )
        where = torch.device("cpu") if self.path == "faiss-cpu" else device
        screen = self.path == "torch" and self.distance == "cosine" and fast_bf16(where)
        feats_q = self._buffer(self.input)
        labels_q = self._buffer(self.target)
        self._mirror.sync(feats_q, labels_q, where, screen)
        self._screen_stats = {"screened": 0, "redone": 0}
        self._faiss_index = None
        if self.index != "Flat":
            rows = self._mirror.rows
            self._faiss_index = build_index(rows, self.distance, self.index, self.index_params)
        if self.path == "faiss-gpu" and self._gpu_resources is None:
            self._gpu_resources = faiss.StandardGpuResources()

    def predict(self, queries: torch.Tensor) -> torch.Tensor:
        """Vote shares ``[B, C]`` of ``queries`` against this epoch's bank."""
        if not self._ready:
            raise RuntimeError(f"{self._describe()}: no bank; it is prepared at validation start.")
        rows, bank_labels = self._mirror.rows, self._mirror.labels
        if queries.shape[1] != rows.shape[1]:
            raise ValueError(
                f"{self._describe()}: validation embeddings {self.input!r} have dim "
                f"{queries.shape[1]} but the bank holds dim {rows.shape[1]}; use the same "
                f"{self.input!r} features in training and validation (one projector output)."
            )
        k = min(self.k, rows.shape[0])
        if self._faiss_index is not None:
            scores, ids = search(self._faiss_index, queries, k, self.distance)
        elif self.path == "torch":
            # Screening pays only when its bound settles most queries (not on near-duplicates).
            screened, redone = self._screen_stats["screened"], self._screen_stats["redone"]
            screen = self._mirror.screen if redone <= 0.25 * screened else None
            scores, ids = torch_knn(
                rows,
                queries,
                k,
                self.distance,
                screen,
                _max_matrix(rows.device),
                self._screen_stats,
            )
        else:
            scores, ids = faiss_knn(rows, queries, k, self.distance, self._gpu_resources)
        ids = ids.to(bank_labels.device)
        valid = ids >= 0
        votes = weighted_vote(
            scores.to(ids.device),
            bank_labels[ids.clamp_min(0)],
            self._classes,
            self.distance,
            self.temperature,
            valid,
        )
        return votes.to(queries.device)

    # ------------------------------------------------------------------ hooks
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Check shapes and dtypes (metadata only), then queue embeddings and labels."""
        self._check_embedding(read_key(outputs, batch, self.input, self._describe()))
        label_dtype(read_key(outputs, batch, self.target, self._describe()), self._describe())
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Check the bank and bring its search-ready copy up to date, once for the epoch."""
        self._ready = False
        feats, labels = self.bank()
        if feats.shape[0] == 0:
            if trainer.sanity_checking:  # nothing trained yet: expected, stay quiet
                return
            raise RuntimeError(
                f"{self._describe()}: the bank is empty at validation: no training batch has been "
                "queued and no checkpoint restored it (e.g. trainer.validate() on a fresh "
                "model). Validate after training, pass ckpt_path= of a checkpoint saved with "
                "this callback, or leave OnlineKNN out of evaluation-only runs."
            )
        classes = self._check_bank(feats, labels)
        if feats.shape[0] < self.k:
            warnings.warn(
                f"{self._describe()}: the bank holds {feats.shape[0]} rows < k={self.k}; voting "
                "with all of them until it fills.",
                stacklevel=2,
            )
        self._prepare(pl_module.device)
        self._ready = True
        if max(classes, 2) != self._classes or not self._metrics:
            self._classes = max(classes, 2)
            self._metrics = {
                "top1": MulticlassAccuracy(self._classes, top_k=1, average="micro"),
                "top5": MulticlassAccuracy(
                    self._classes, top_k=min(5, self._classes), average="micro"
                ),
            }
            self._metrics.update(self.extra_metrics)
        for metric in self._metrics.values():
            metric.to(pl_module.device)
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
        """Classify the batch and update the metrics."""
        if not self._ready:
            return
        queries = self._check_embedding(read_key(outputs, batch, self.input, self._describe()))
        labels = check_labels(
            read_key(outputs, batch, self.target, self._describe()),
            self._describe(),
            self._classes,
        )
        if not bool(torch.isfinite(queries).all()):
            raise ValueError(
                f"{self._describe()}: validation embeddings {self.input!r} hold NaN or Inf; "
                "check the model (did training diverge?) or the validation data."
            )
        votes = self.predict(queries.detach())
        for metric in self._metrics.values():
            metric.update(votes.to(metric.device), labels.to(metric.device))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log the synced metrics."""
        if not self._ready:
            return
        for key, metric in self._metrics.items():
            value = metric.compute()
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                pl_module.log(f"val/{self.name}_{key}", value.float(), sync_dist=False)
            metric.reset()
        self._faiss_index, self._ready = None, False


def _max_matrix(device: torch.device) -> int:
    """Elements of one similarity block: small on CPU (cache, memory), large on GPUs."""
    return 2**28 if device.type == "cuda" else 2**24
