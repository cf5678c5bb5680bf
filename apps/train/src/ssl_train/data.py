"""In-memory batch loading for the app: a resumable, rank-sharded loader and a DataModule.

Training data stays as uint8 tensors in memory; a batch is one ``index_select``
(``TensorImageDataset.__getitems__``) and augmentation runs later, batched, on the module's device
(``ssl_core.Module(batch_transforms=...)``). No worker processes are needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import Dataset

_SPLIT_KEYS = frozenset({"dataset", "batch_size", "shuffle", "drop_last", "limit", "num_workers"})


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
    ``skip_next(n)`` drops the first ``n`` batches of the next pass, which is how a run resumed
    mid-epoch continues with exactly the batches it had not trained on yet.

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

    def state_dict(self) -> dict[str, int]:
        """Lightning's resumable-loader hook (nothing to store).

        The position itself is restored by :class:`ssl_train.callbacks.LoaderStateCallback`,
        which counts consumed (not merely prefetched) batches.
        """
        return {}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """See :meth:`state_dict`."""

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


class DataModule(pl.LightningDataModule):
    """Train/val/test loaders over in-memory datasets, described as plain config dicts.

    Each split is a dict with ``dataset`` (a map-style dataset, e.g. the result of
    ``ssl_data.datasets.get_dataset``) and loader settings ``batch_size``, ``shuffle``,
    ``drop_last``, ``limit`` (``num_workers`` is accepted for config compatibility and unused:
    batches are tensor gathers). The remaining arguments describe the data for interpolation in
    configs (``${data.num_classes}``) and are exposed as attributes.

    Args:
        train: The training split.
        val: The validation split (the online probe / kNN evaluation), or ``None``.
        test: The test split, or ``None``.
        seed: Shuffling seed.
        name: Dataset name (informational).
        num_classes: Number of classes.
        in_channels: Image channels.
        image_size: Image side length after augmentation.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation std.
        root: Dataset root (informational; pass it to the dataset's own config).
        download: Whether datasets may be downloaded (informational, as ``root``).

    Example:
        >>> import torch, ssl_data  # doctest: +SKIP
        >>> ds = ssl_data.TensorImageDataset(torch.zeros(8, 1, 4, 4, dtype=torch.uint8))
        >>> dm = DataModule(train={"dataset": ds, "batch_size": 4, "shuffle": True})
    """

    def __init__(
        self,
        train: Mapping[str, Any] | None = None,
        val: Mapping[str, Any] | None = None,
        test: Mapping[str, Any] | None = None,
        seed: int = 0,
        name: str | None = None,
        num_classes: int | None = None,
        in_channels: int | None = None,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        root: str | None = None,
        download: bool = False,
        augment: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Augmentation settings of this dataset (crop scale, jitter strength); the method configs
        # read them as ${data.augment.*} so each dataset carries the recipe that suits it.
        self.augment = dict(augment or {})
        self.splits = {}
        for split, spec in (("train", train), ("val", val), ("test", test)):
            if spec is None:
                continue
            unknown = sorted(set(spec) - _SPLIT_KEYS)
            if unknown:
                raise ValueError(
                    f"data.{split}: unknown key(s) {unknown}; valid keys: {sorted(_SPLIT_KEYS)}."
                )
            if "dataset" not in spec:
                raise ValueError(f"data.{split} needs a 'dataset' entry.")
            self.splits[split] = dict(spec)
        if "train" not in self.splits:
            raise ValueError("data.train is required (a dict with 'dataset' and 'batch_size').")
        self.seed = seed
        self.name = name
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.root = root
        self.download = download
        self.loaders: dict[str, InMemoryLoader] = {}
        self._resume_position: tuple[int, int] | None = None

    def resume_at(self, epoch: int, consumed: int) -> None:
        """Start the next training pass at ``epoch`` after ``consumed`` batches (on resume).

        Called while a checkpoint is restored, before Lightning creates (and prefetches from)
        the training iterator.
        """
        self._resume_position = (int(epoch), int(consumed))

    def _loader(self, split: str) -> InMemoryLoader:
        if split in self.loaders:
            return self.loaders[split]
        spec = self.splits[split]
        trainer = self.trainer
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        training = split == "train"
        loader = InMemoryLoader(
            spec["dataset"],
            batch_size=spec.get("batch_size", 256),
            shuffle=spec.get("shuffle", training),
            drop_last=spec.get("drop_last", training),
            seed=self.seed,
            limit=spec.get("limit"),
            rank=rank,
            world_size=world,
        )
        self.loaders[split] = loader
        return loader

    def train_dataloader(self) -> InMemoryLoader:
        """Return the training loader (positioned for a resume when one is pending)."""
        loader = self._loader("train")
        if self._resume_position is not None:
            epoch, consumed = self._resume_position
            self._resume_position = None
            loader.sampler.set_epoch(epoch)
            loader.skip_next(consumed)
        return loader

    def val_dataloader(self) -> InMemoryLoader | list:
        """Return the validation loader (an empty list when there is no val split)."""
        return self._loader("val") if "val" in self.splits else []

    def test_dataloader(self) -> InMemoryLoader | list:
        """Return the test loader (an empty list when there is no test split)."""
        return self._loader("test") if "test" in self.splits else []
