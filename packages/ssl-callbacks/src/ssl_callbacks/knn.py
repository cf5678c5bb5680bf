"""k-nearest-neighbour classification of validation embeddings against a bank of training ones.

The search uses faiss: an exact ``IndexFlatIP`` on L2-normalised vectors for cosine similarity or
an exact ``IndexFlatL2`` for euclidean distance by default, or any faiss ``index_factory``
description (``"HNSW32"``, ``"IVF1024,Flat"``) for approximate search of banks of millions.
``benchmarks/knn.py`` measures it against the chunked torch brute force used by solo-learn and
stable-pretraining.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy

from ssl_callbacks._keys import check_labels, read_key
from ssl_callbacks.queue import QueueConsumer, QueueSpec

Distance = Literal["cosine", "euclidean"]
_DISTANCES = ("cosine", "euclidean")


def _as_faiss_array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


def build_index(
    bank: torch.Tensor,
    distance: Distance = "cosine",
    index: str = "Flat",
    index_params: str | None = None,
) -> faiss.Index:
    """Build a faiss index over ``bank`` (``[n, dim]``).

    Args:
        bank: The reference embeddings.
        distance: ``"cosine"`` (inner product of L2-normalised vectors) or ``"euclidean"``.
        index: A faiss ``index_factory`` description; ``"Flat"`` is exact.
        index_params: Optional faiss ``ParameterSpace`` string, e.g. ``"nprobe=16"`` or
            ``"efSearch=128"``.

    Returns:
        A trained, filled faiss index (the bank is copied into it).

    Raises:
        ValueError: Unknown distance, bad index description, or too few rows to train it.
    """
    if distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}.")
    if bank.dim() != 2 or bank.shape[0] == 0:
        raise ValueError(
            f"build_index: bank must be a non-empty [n, dim] tensor, got {list(bank.shape)}."
        )
    # Keep faiss's OpenMP pool the size of torch's instead of every core of the machine.
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
    if distance == "cosine":
        bank = F.normalize(bank.float(), dim=1)
    data = _as_faiss_array(bank)
    metric = faiss.METRIC_INNER_PRODUCT if distance == "cosine" else faiss.METRIC_L2
    try:
        idx = faiss.index_factory(data.shape[1], index, metric)
    except RuntimeError as err:
        raise ValueError(
            f"faiss could not build index {index!r} for dim {data.shape[1]}: {err}. Use a faiss "
            'index_factory string such as "Flat" (exact), "HNSW32" or "IVF1024,Flat".'
        ) from err
    if not idx.is_trained:
        try:
            idx.train(data)
        except RuntimeError as err:
            raise ValueError(
                f"faiss could not train index {index!r} on {data.shape[0]} rows: {err}. Use fewer "
                'lists (e.g. "IVF64,Flat"), a longer queue, or the exact "Flat" index.'
            ) from err
    if index_params:
        faiss.ParameterSpace().set_index_parameters(idx, index_params)
    idx.add(data)
    return idx


def search(
    index: faiss.Index, queries: torch.Tensor, k: int, distance: Distance = "cosine"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the ``k`` nearest bank rows of each query.

    Returns:
        ``(scores, ids)``, both ``[B, k]`` on CPU: cosine similarities (``distance="cosine"``) or
        euclidean distances (not squared), and bank row ids (``-1`` where an approximate index
        found fewer than ``k``).
    """
    if distance == "cosine":
        queries = F.normalize(queries.float(), dim=1)
    scores, ids = index.search(_as_faiss_array(queries), k)
    scores_t, ids_t = torch.from_numpy(scores), torch.from_numpy(ids)
    if distance == "euclidean":
        scores_t = scores_t.clamp_min(0).sqrt()
    return scores_t, ids_t


def weighted_vote(
    scores: torch.Tensor,
    neighbour_labels: torch.Tensor,
    num_classes: int,
    distance: Distance = "cosine",
    temperature: float = 0.07,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class scores from neighbours: ``exp(sim / T)`` weights (cosine) or ``1 / d`` (euclidean).

    Args:
        scores: ``[B, k]`` similarities or distances of the neighbours.
        neighbour_labels: ``[B, k]`` labels of the neighbours.
        num_classes: Number of classes C.
        distance: Which weighting to use.
        temperature: T of the cosine weighting.
        valid: Optional ``[B, k]`` mask of neighbours that exist.

    Returns:
        ``[B, C]`` normalised vote shares (rows sum to 1 when any neighbour is valid).
    """
    scores = scores.double()
    if distance == "cosine":
        # exp((s - max)/T) is exp(s/T) up to a per-row factor: same shares, no overflow.
        weights = torch.exp((scores - scores.max(dim=1, keepdim=True).values) / temperature)
    else:
        weights = 1.0 / (scores + 1e-8)
    if valid is not None:
        weights = weights * valid
        neighbour_labels = neighbour_labels.masked_fill(~valid, 0)
    votes = torch.zeros(scores.shape[0], num_classes, dtype=torch.float64, device=scores.device)
    votes.scatter_add_(1, neighbour_labels.long(), weights)
    return (votes / votes.sum(dim=1, keepdim=True).clamp_min(1e-300)).float()


class OnlineKNN(QueueConsumer):
    """Weighted kNN accuracy of validation embeddings against a queue of training embeddings.

    During training the callback queues ``input`` embeddings and ``target`` labels (gathered
    across ranks, so every rank holds the same bank). At the start of each validation epoch it
    builds one faiss index of the bank; each validation batch is classified by weighted voting of
    its ``k`` neighbours and top-1/top-5 accuracy (torchmetrics ``MulticlassAccuracy``, micro
    averaged, synced across ranks) is logged as ``val/{name}_top1`` and ``val/{name}_top5``, plus
    ``val/{name}_{key}`` for every extra metric given. An empty bank warns and skips; a bank with
    fewer than ``k`` rows (early in training) warns and votes with all its rows. The search runs
    on CPU (faiss-cpu); queries are moved there and the votes moved back.

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
            ``"IVF4096,Flat"`` are approximate options for banks of millions.
        index_params: faiss ``ParameterSpace`` string for the index, e.g. ``"nprobe=32"``.

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
    ) -> None:
        super().__init__()
        who = f"OnlineKNN({name!r})"
        if distance not in _DISTANCES:
            raise ValueError(f"{who}: distance must be one of {_DISTANCES}, got {distance!r}.")
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
        self._faiss_index: faiss.Index | None = None
        self._bank_labels: torch.Tensor | None = None
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

    def predict(self, queries: torch.Tensor) -> torch.Tensor:
        """Vote shares ``[B, C]`` of ``queries`` against the index built for this epoch."""
        if self._faiss_index is None or self._bank_labels is None:
            raise RuntimeError(f"{self._describe()}: no index; it is built at validation start.")
        bank_dim = self._faiss_index.d
        if queries.shape[1] != bank_dim:
            raise ValueError(
                f"{self._describe()}: validation embeddings have dim {queries.shape[1]} but the "
                f"bank holds dim {bank_dim}; use the same {self.input!r} features in both stages."
            )
        k = min(self.k, self._faiss_index.ntotal)
        scores, ids = search(self._faiss_index, queries, k, self.distance)
        valid = ids >= 0
        neighbour_labels = self._bank_labels[ids.clamp_min(0)]
        votes = weighted_vote(
            scores, neighbour_labels, self._classes, self.distance, self.temperature, valid
        )
        return votes.to(queries.device)

    # ------------------------------------------------------------------ hooks
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Check the dtypes, then queue embeddings and labels (if this callback owns them)."""
        self._check_embedding(read_key(outputs, batch, self.input, self._describe()))
        labels = read_key(outputs, batch, self.target, self._describe())
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point():
            check_labels(labels, self._describe())  # raises the dtype error
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Build the faiss index of the bank once for the epoch."""
        self._faiss_index, self._bank_labels = None, None
        feats, labels = self.bank()
        if feats.shape[0] == 0:
            if trainer.sanity_checking:  # nothing trained yet: expected, stay quiet
                return
            warnings.warn(
                f"{self._describe()}: the bank is empty (no training batch queued yet); kNN "
                "evaluation is skipped this epoch.",
                stacklevel=2,
            )
            return
        labels = check_labels(labels.cpu(), self._describe(), self.num_classes)
        if feats.shape[0] < self.k:
            warnings.warn(
                f"{self._describe()}: the bank holds {feats.shape[0]} rows < k={self.k}; voting "
                "with all of them until it fills.",
                stacklevel=2,
            )
        classes = self.num_classes or int(labels.max()) + 1
        self._faiss_index = build_index(feats, self.distance, self.index, self.index_params)
        self._bank_labels = labels
        if classes != self._classes or not self._metrics:
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
        if self._faiss_index is None:
            return
        queries = self._check_embedding(read_key(outputs, batch, self.input, self._describe()))
        labels = check_labels(
            read_key(outputs, batch, self.target, self._describe()),
            self._describe(),
            self._classes,
        )
        votes = self.predict(queries.detach())
        for metric in self._metrics.values():
            metric.update(votes.to(metric.device), labels.to(metric.device))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log the synced metrics and free the index."""
        if self._faiss_index is None:
            return
        for key, metric in self._metrics.items():
            value = metric.compute()
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                pl_module.log(f"val/{self.name}_{key}", value.float(), sync_dist=False)
            metric.reset()
        self._faiss_index, self._bank_labels = None, None
