"""Worker-process loaders: a rank-sharded epoch sampler and a resumable ``StatefulDataLoader``.

``torchdata``'s ``StatefulDataLoader`` is a drop-in ``torch.utils.data.DataLoader`` whose
``state_dict()`` records how far an epoch went (sampler position and worker states), so a
killed run resumes mid-epoch with exactly the batches it had not seen.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import BatchSampler, Dataset, Sampler

from ssl_data.dict_dataset import collate_batch

__all__ = ["ShardSampler", "available_cpus", "default_num_workers", "make_loader"]


def available_cpus() -> int:
    """CPUs this process may run on (``sched_getaffinity``, else ``os.cpu_count``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def default_num_workers(dataset: Dataset) -> int:
    """Default worker count for ``dataset``.

    0 for in-memory tensors (a batch is one gather, faster in-process than shipped from a worker),
    else one per CPU minus the training process, between 1 and 8.
    """
    if getattr(dataset, "in_memory", False) or hasattr(dataset, "images"):
        return 0
    return max(1, min(8, available_cpus() - 1))


class ShardSampler(Sampler):
    """This rank's share of a seeded epoch order (``DistributedSampler`` semantics, no padding).

    Epoch ``e``'s order is ``randperm(size)`` seeded with ``seed + e`` (or ``range`` without
    shuffling); rank ``r`` of ``W`` takes positions ``r, r+W, ...`` of its first
    ``(size // W) * W`` entries, so ranks are disjoint, equal-sized, and no sample is seen twice
    in an epoch. Lightning calls :meth:`set_epoch` before each epoch (also on resume).

    Args:
        size: Number of samples (indices ``0..size-1``).
        shuffle: Reshuffle each epoch.
        seed: Base seed.
        rank: This process's rank.
        world_size: Number of processes.
        with_epoch: Yield ``(index, epoch)`` pairs (for datasets that seed crops per epoch).
    """

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        with_epoch: bool = False,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}.")
        self.size = int(size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.with_epoch = with_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.size // self.world_size

    def indices(self) -> torch.Tensor:
        """This rank's indices for the current epoch."""
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        return order[: len(self) * self.world_size][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[Any]:
        idx = self.indices().tolist()
        if self.with_epoch:
            return iter([(i, self.epoch) for i in idx])
        return iter(idx)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int = 0,
    limit: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int | None = None,
    persistent_workers: bool | None = None,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
) -> Any:
    """A resumable ``torchdata.stateful_dataloader.StatefulDataLoader`` over ``dataset``.

    Batches are fetched with ``dataset.__getitems__`` when the dataset has it (one call per batch,
    in a worker when ``num_workers > 0``) and collated with :func:`ssl_data.collate_batch`.

    Args:
        dataset: Map-style dataset.
        batch_size: Samples per batch (per rank).
        shuffle: Reshuffle each epoch (:class:`ShardSampler`).
        drop_last: Drop the last incomplete batch.
        seed: Shuffling seed.
        limit: Use only the first ``limit`` samples, or ``None``.
        rank: This process's rank.
        world_size: Number of processes.
        num_workers: Worker processes (``None``: :func:`default_num_workers`).
        persistent_workers: Keep workers between epochs (``None``: when there are workers).
        pin_memory: Pin batches for fast GPU copies (``None``: when CUDA is available).
        prefetch_factor: Batches prefetched per worker (``None``: 2 with workers).

    Raises:
        ValueError: a bad size, or a loader that would be empty.

    Example:
        >>> import ssl_data
        >>> ds = ssl_data.TensorImageDataset(torch.zeros(8, 1, 4, 4, dtype=torch.uint8))
        >>> next(iter(make_loader(ds, 4)))["image"].shape
        torch.Size([4, 1, 4, 4])
    """
    from torchdata.stateful_dataloader import StatefulDataLoader

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    size = len(dataset)  # type: ignore[arg-type]
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1 or null, got {limit}.")
        size = min(size, int(limit))
    with_epoch = hasattr(dataset, "crops")  # ImageFileDataset seeds its crops per epoch
    sampler = ShardSampler(size, shuffle, seed, rank, world_size, with_epoch=with_epoch)
    batches = BatchSampler(sampler, int(batch_size), drop_last)
    if len(batches) == 0:
        raise ValueError(
            f"The loader would be empty: {size} samples over {world_size} process(es) with "
            f"batch_size={batch_size} and drop_last={drop_last}; lower the batch size or raise "
            "the data limit."
        )
    workers = default_num_workers(dataset) if num_workers is None else int(num_workers)
    if workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {workers}.")
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs["persistent_workers"] = True if persistent_workers is None else persistent_workers
        kwargs["prefetch_factor"] = 2 if prefetch_factor is None else int(prefetch_factor)
    elif persistent_workers or prefetch_factor is not None:
        raise ValueError(
            "persistent_workers and prefetch_factor need num_workers > 0; set num_workers or "
            "leave them unset."
        )
    with warnings.catch_warnings():  # torchdata 0.11 calls the deprecated torch.set_vital
        warnings.filterwarnings("ignore", message=".*set_vital.*")
        return StatefulDataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=workers,
            collate_fn=collate_batch,
            pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
            **kwargs,
        )
