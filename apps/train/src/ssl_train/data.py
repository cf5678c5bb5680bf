"""The app's data: :class:`ssl_data.DataModule` and an in-process loader for ``ssl-eval``.

``InMemoryLoader`` serves offline feature extraction.
The training DataModule is library code in ``ssl_data``; ``ssl_train.data.DataModule`` is the
same class, kept for configs that name it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ssl_data.datamodule import DataModule

__all__ = ["DataModule", "EpochPermutation", "InMemoryLoader"]


class EpochPermutation:
    """The sample order of one epoch: a seeded permutation (or ``range``) of the indices.

    Lightning calls ``set_epoch`` on a loader's ``sampler`` before every epoch, also when a run
    is resumed, so the order of epoch ``e`` is a pure function of ``(seed, e)``.

    Args:
        size: Number of samples to draw from (indices ``0..size-1``).
        shuffle: Permute the indices each epoch.
        seed: Base seed; epoch ``e`` uses ``seed + e``.
    """

    def __init__(self, size: int, shuffle: bool, seed: int) -> None:
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order ``indices`` returns."""
        self.epoch = int(epoch)

    def indices(self) -> torch.Tensor:
        """Return the index order of the current epoch."""
        if not self.shuffle:
            return torch.arange(self.size)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=generator)


class InMemoryLoader:
    """Iterate batches of a map-style dataset without worker processes.

    Batches are fetched with ``dataset.__getitems__`` when the dataset has it (one tensor gather
    per batch), else sample by sample and stacked with ``ssl_data.collate_batch``. Under
    distributed training each rank takes an interleaved, equal-sized share of every epoch.
    ``skip_next(n)`` drops the first ``n`` batches of the next pass. Training uses
    :class:`ssl_data.DataModule` (a resumable ``StatefulDataLoader``) instead.

    Args:
        dataset: Map-style dataset.
        batch_size: Samples per batch (per rank).
        shuffle: Reshuffle every epoch (seeded, see ``EpochPermutation``).
        drop_last: Drop the last incomplete batch.
        seed: Base seed of the shuffling.
        limit: Use only the first ``limit`` samples (quick runs), or ``None`` for all.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        limit: int | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        size = len(dataset)  # type: ignore[arg-type]
        if limit is not None:
            if limit < 1:
                raise ValueError(f"limit must be >= 1 or null, got {limit}.")
            size = min(size, int(limit))
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.sampler = EpochPermutation(size, shuffle, seed)
        self.batch_sampler = None  # read by Lightning's dataloader inspection
        self._skip = 0
        if len(self) == 0:
            raise ValueError(
                f"The loader would be empty: {size} samples over {world_size} process(es) with "
                f"batch_size={batch_size} and drop_last={drop_last}; lower the batch size or "
                "raise the data limit."
            )

    def _shard_size(self) -> int:
        return self.sampler.size // self.world_size

    def __len__(self) -> int:
        n = self._shard_size()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def skip_next(self, batches: int) -> None:
        """Skip the first ``batches`` batches of the next pass (used on resume)."""
        self._skip = int(batches)

    def _fetch(self, idx: torch.Tensor) -> dict[str, Any]:
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems is not None:
            batch = getitems(idx.tolist())
            if isinstance(batch, Mapping):
                return dict(batch)
            samples: Sequence[Any] = batch
        else:
            samples = [self.dataset[int(i)] for i in idx]
        from ssl_data import collate_batch

        return collate_batch(samples)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        order = self.sampler.indices()
        shard = self._shard_size()
        order = order[: shard * self.world_size][self.rank :: self.world_size]
        skip, self._skip = self._skip, 0
        for b in range(skip, len(self)):
            yield self._fetch(order[b * self.batch_size : (b + 1) * self.batch_size])
