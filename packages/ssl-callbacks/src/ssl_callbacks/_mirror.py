"""The kNN's search-ready copy of its bank, following the training queues."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_callbacks._ring import RingBuffer
from ssl_callbacks._screen import INFLATE, Screen, residual_and_norm


class BankMirror:
    """Prepared bank rows (float32, L2-normalised for cosine; bfloat16 copy for screening).

    :meth:`sync` writes only the rows pushed to the queues since the previous sync over the
    oldest ones (the index follows the queue); it prepares everything again only when the queues
    were replaced (checkpoint load), the device changed, or the rows pushed to the embeddings and
    the labels differ. Row ``i`` of :attr:`rows` has label ``labels[i]``; the order is the
    mirror's own ring order, not the queue's.

    Args:
        length: Rows kept (the kNN's ``queue_length``).
        distance: ``"cosine"`` (rows normalised) or ``"euclidean"``.
    """

    def __init__(self, length: int, distance: str) -> None:
        self.length = int(length)
        self.distance = distance
        self._rows: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._screen: torch.Tensor | None = None
        self._bounds: torch.Tensor | None = None  # [length, 2] bounds of ||x - x'||, ||x'||
        self._bound_max: tuple[float, float] = (0.0, 0.0)
        self._ptr = 0
        self._count = 0
        self._seen: tuple | None = None
        self.rows_prepared = 0  # rows normalised/copied by the last sync (for the benchmark)

    @property
    def rows(self) -> torch.Tensor:
        """``[n, D]`` prepared rows."""
        assert self._rows is not None
        return self._rows[: self._count]

    @property
    def labels(self) -> torch.Tensor:
        """``[n]`` int64 labels of :attr:`rows`."""
        assert self._labels is not None
        return self._labels[: self._count]

    @property
    def screen(self) -> Screen | None:
        """bfloat16 copy of :attr:`rows` with its error bounds; ``None`` when screening is off."""
        if self._screen is None:
            return None
        return Screen(self._screen[: self._count], *self._bound_max)

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        """Forget the prepared rows (the next sync prepares all of them)."""
        self._rows = self._labels = self._screen = self._bounds = None
        self._ptr = self._count = 0
        self._seen = None

    def sync(
        self, feats: RingBuffer, labels: RingBuffer, device: torch.device, screen: bool
    ) -> None:
        """Bring the mirror up to date with the queues' newest ``length`` rows."""
        source = (id(feats), feats.generation, id(labels), labels.generation, device, screen)
        new_f = feats.total - (self._seen[1] if self._seen else 0)
        new_l = labels.total - (self._seen[2] if self._seen else 0)
        follows = self._seen is not None and self._seen[0] == source and new_f == new_l >= 0
        if follows:
            new = min(new_f, self.length)
        else:
            self._ptr = self._count = 0
            new = min(len(feats), len(labels), self.length)
        self._seen = (source, feats.total, labels.total)
        self.rows_prepared = new
        if new == 0:
            return
        rows = feats.get(last=new).to(device, torch.float32)
        if self.distance == "cosine":
            rows = F.normalize(rows, dim=1)
        self._allocate(rows.shape[1], device, screen)
        self._write(self._rows, rows)
        self._write(self._labels, labels.get(last=new).to(device, torch.long).reshape(-1))
        if self._screen is not None:
            low = rows.to(torch.bfloat16)
            self._write(self._screen, low)
            self._write(self._bounds, torch.stack(residual_and_norm(rows, low), dim=1))
        self._ptr = (self._ptr + new) % self.length
        self._count = min(self.length, self._count + new)
        if self._bounds is not None:
            top = self._bounds[: self._count].max(dim=0).values.tolist()
            self._bound_max = (top[0] * INFLATE, top[1] * INFLATE)

    def _allocate(self, dim: int, device: torch.device, screen: bool) -> None:
        if self._rows is None or self._rows.shape[1] != dim or self._rows.device != device:
            self._rows = torch.zeros(self.length, dim, device=device)
            self._labels = torch.zeros(self.length, dtype=torch.long, device=device)
            self._ptr = self._count = 0
        if screen and self._screen is None:
            self._screen = self._rows.to(torch.bfloat16)
            self._bounds = torch.stack(residual_and_norm(self._rows, self._screen), dim=1)
        elif not screen:
            self._screen = self._bounds = None

    def _write(self, store: torch.Tensor | None, rows: torch.Tensor) -> None:
        assert store is not None
        n, end = rows.shape[0], self._ptr + rows.shape[0]
        if end <= self.length:
            store[self._ptr : end] = rows
        else:
            first = self.length - self._ptr
            store[self._ptr :] = rows[:first]
            store[: n - first] = rows[first:]
