"""A sampler that yields each index several times in a row (multi-view batches)."""

import math
from collections.abc import Iterator, Sized

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["RepeatedRandomSampler"]


class RepeatedRandomSampler(Sampler[int]):
    """Yield every index ``n_views`` times in a row, optionally shuffled and sharded by rank.

    With a per-sample multi-view transform each repetition gets its own random augmentation, so
    a batch of ``N * n_views`` rows holds ``N`` samples x ``n_views`` views (sample-major); use a
    batch size that is a multiple of ``n_views`` so that no sample's views are split between
    batches.

    Distributed use follows ``torch.utils.data.DistributedSampler``: the (shuffled) index list is
    padded by repeating its beginning up to a multiple of ``num_replicas`` so that every rank gets
    the same number of groups; rank ``r`` takes positions ``r, r + R, r + 2R, ...``. Ranks thus get
    disjoint whole groups, except for the at most ``R - 1`` padding samples, which repeat samples
    of other ranks (pass ``drop_last=True`` to drop the tail instead and keep ranks strictly
    disjoint). Call ``set_epoch(epoch)`` at each epoch to reshuffle (Lightning does this).

    Args:
        data_source: The dataset (only its length is used).
        n_views: Repetitions of each index (>= 1).
        shuffle: Shuffle the indices each epoch with a generator seeded by ``seed + epoch``.
        seed: Base seed; must be equal on all ranks.
        num_replicas: Number of ranks; defaults to the world size when ``torch.distributed`` is
            initialised, else 1.
        rank: This rank; defaults to the distributed rank, else 0.
        drop_last: Drop the tail that does not divide evenly between ranks instead of padding.

    Example:
        >>> list(RepeatedRandomSampler(range(3), n_views=2, shuffle=False))
        [0, 0, 1, 1, 2, 2]
    """

    def __init__(
        self,
        data_source: Sized,
        n_views: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
    ) -> None:
        if not isinstance(n_views, int) or n_views < 1:
            raise ValueError(f"n_views must be an integer >= 1, got {n_views!r}.")
        initialised = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if initialised else 1
        if rank is None:
            rank = dist.get_rank() if initialised else 0
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"rank must lie in [0, num_replicas) with num_replicas >= 1, got rank={rank}, "
                f"num_replicas={num_replicas}."
            )
        self.size = len(data_source)
        if self.size == 0:
            raise ValueError("RepeatedRandomSampler: the dataset is empty; check its root/split.")
        if drop_last and self.size < num_replicas:
            raise ValueError(
                f"drop_last=True with {self.size} samples and {num_replicas} ranks leaves no "
                "sample per rank; use drop_last=False or fewer ranks."
            )
        self.n_views = n_views
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.drop_last = drop_last
        self.epoch = 0
        if drop_last:
            self.num_groups = self.size // num_replicas
        else:
            self.num_groups = math.ceil(self.size / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; the shuffle order depends on ``seed + epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_groups * self.n_views

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        total = self.num_groups * self.num_replicas
        if total > self.size:
            order = order.repeat(math.ceil(total / self.size))
        order = order[:total][self.rank :: self.num_replicas]
        return iter(order.repeat_interleave(self.n_views).tolist())
