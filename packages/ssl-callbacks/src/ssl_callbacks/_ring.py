"""A fixed-size ring buffer of tensor rows, and gathering rows across ranks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from lightning.pytorch import Trainer


class RingBuffer:
    """The most recent ``length`` rows pushed, stored in one preallocated tensor.

    The storage is allocated on the first push (or load) with that tensor's row shape, dtype and
    device unless they were fixed at construction. Rows are detached and cast to the buffer's dtype.

    Args:
        length: Number of rows kept.
        row_shape: Shape of one row (``(dim,)`` for embeddings, ``()`` for labels), or ``None`` to
            take it from the first push.
        dtype: Storage dtype, or ``None`` to take it from the first push.
        name: Used in error messages.
    """

    def __init__(
        self,
        length: int,
        row_shape: tuple[int, ...] | None = None,
        dtype: torch.dtype | None = None,
        name: str = "queue",
    ) -> None:
        if length < 1:
            raise ValueError(f"{name}: queue_length must be >= 1, got {length}.")
        self.length = int(length)
        self.row_shape = row_shape
        self.dtype = dtype
        self.name = name
        self._data: torch.Tensor | None = None
        self._ptr = 0  # next row to write
        self._count = 0  # rows filled so far (<= length)
        self.total = 0  # rows pushed since the contents were last replaced (host counter)
        self.generation = 0  # bumped whenever the contents are replaced (allocation, load)

    def __len__(self) -> int:
        return self._count

    @property
    def device(self) -> torch.device | None:
        """Device of the storage, ``None`` before allocation."""
        return None if self._data is None else self._data.device

    def _allocate(self, row_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device):
        self.row_shape = tuple(row_shape)
        self.dtype = dtype
        self._data = torch.zeros((self.length, *self.row_shape), dtype=dtype, device=device)
        self._ptr = 0
        self._count = 0
        self.total = 0
        self.generation += 1

    def to(self, device: torch.device | str) -> RingBuffer:
        """Move the storage to ``device`` (no-op before allocation)."""
        if self._data is not None:
            self._data = self._data.to(device)
        return self

    def push(self, rows: torch.Tensor) -> None:
        """Append ``rows`` (``[b, *row_shape]``), overwriting the oldest rows when full.

        A push of more than ``length`` rows keeps its last ``length`` rows.

        Raises:
            ValueError: The rows' trailing shape differs from the queue's.
        """
        if not isinstance(rows, torch.Tensor):
            raise TypeError(f"{self.name}: expected a tensor, got {type(rows).__name__}.")
        rows = rows.detach()
        if rows.dim() == 0:
            raise ValueError(f"{self.name}: expected rows [B, ...], got a scalar tensor.")
        if self.row_shape is not None and tuple(rows.shape[1:]) != self.row_shape:
            raise ValueError(
                f"{self.name}: got rows of shape {list(rows.shape)} but the queue holds rows of "
                f"shape {list(self.row_shape)} (dim={self.row_shape}). Make the embedding "
                "dimension match, or set the queue's dim to the embedding's (or leave it None "
                "to infer it from the first batch)."
            )
        if self._data is None:
            self._allocate(rows.shape[1:], self.dtype or rows.dtype, rows.device)
        assert self._data is not None
        if rows.device != self._data.device:
            self._data = self._data.to(rows.device)
        rows = rows.to(self._data.dtype)
        b = rows.shape[0]
        self.total += b
        if b >= self.length:
            self._data.copy_(rows[b - self.length :])
            self._ptr, self._count = 0, self.length
            return
        end = self._ptr + b
        if end <= self.length:
            self._data[self._ptr : end] = rows
        else:
            first = self.length - self._ptr
            self._data[self._ptr :] = rows[:first]
            self._data[: b - first] = rows[first:]
        self._ptr = end % self.length
        self._count = min(self.length, self._count + b)

    def get(self, last: int | None = None) -> torch.Tensor:
        """Return the stored rows, oldest first, optionally only the ``last`` newest ones.

        A view of the storage when the rows are contiguous in it, else one copy of those rows.
        """
        if self._data is None:
            shape = (0, *(self.row_shape if self.row_shape is not None else (0,)))
            return torch.empty(shape, dtype=self.dtype or torch.float32)
        n = self._count if last is None else max(0, min(int(last), self._count))
        start = (self._ptr - n) % self.length if self._count == self.length else self._count - n
        if start + n <= self.length:
            return self._data[start : start + n]
        return torch.cat([self._data[start:], self._data[: start + n - self.length]])

    def state(self) -> torch.Tensor:
        """The rows oldest first, on CPU, for a checkpoint."""
        return self.get().detach().cpu().clone()

    def load(self, rows: torch.Tensor) -> None:
        """Replace the contents with ``rows`` (oldest first), as saved by :meth:`state`."""
        device = self.device if self._data is not None else rows.device
        if rows.dim() == 0 or (rows.shape[0] == 0 and self.row_shape is None):
            return
        if self._data is None:
            self._allocate(rows.shape[1:], self.dtype or rows.dtype, device)
        self._ptr, self._count, self.total = 0, 0, 0
        self.generation += 1
        self.push(rows)


def gather_rows(rows: torch.Tensor, trainer: Trainer) -> torch.Tensor:
    """Concatenate ``rows`` from every rank, rank 0 first (rows counts may differ per rank).

    Args:
        rows: This rank's ``[b, ...]`` rows.
        trainer: The trainer whose strategy performs the collective.

    Returns:
        ``rows`` itself on a single process, else all ranks' rows, ``[sum b, ...]``.
    """
    if trainer.world_size <= 1:
        return rows
    strategy = trainer.strategy
    count = torch.tensor([rows.shape[0]], device=rows.device, dtype=torch.long)
    counts = [int(c) for c in strategy.all_gather(count).reshape(-1)]
    longest = max(counts)
    if rows.shape[0] < longest:
        pad = rows.new_zeros((longest - rows.shape[0], *rows.shape[1:]))
        rows = torch.cat([rows, pad])
    gathered = strategy.all_gather(rows.contiguous())  # [world, longest, ...]
    return torch.cat([gathered[r, :c] for r, c in enumerate(counts)])
