"""Training-time queues of step outputs, shared between the callbacks of one trainer.

Sharing rule: every callback that needs a queue (:class:`OnlineQueue`, ``OnlineKNN``,
``RankMe``) is a :class:`QueueConsumer` declaring :class:`QueueSpec` requests. At ``setup`` the
consumers of one key in ``trainer.callbacks`` share one ring buffer, sized to the largest
``queue_length`` requested; each reads only its own newest ``queue_length`` rows. The buffer is
owned by the consumer with the smallest ``state_key`` (not the first in the list), so any order of
the callback list gives the same owner: the owner pushes once per training batch and saves the
rows in its checkpoint state. On load, the rows saved by any consumer of the key are restored into
the shared buffer (the longest copy wins), so adding or reordering consumers keeps them. Nothing
is stored on classes or modules, so two trainers never share a queue.

Consumers of one key must agree on ``dim`` and ``dtype`` (``None`` agrees with anything); a
disagreement raises at ``setup``. A shared queue gathers rows from all ranks if **any** of its
consumers asks for it (``OnlineKNN`` and ``RankMe`` always do), so in DDP an ``OnlineQueue`` sharing
a key with them holds every rank's rows.
"""

from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from ssl_callbacks._keys import read_key
from ssl_callbacks._ring import RingBuffer, gather_rows


@dataclass(frozen=True)
class QueueSpec:
    """One consumer's request for the queue of a key.

    Attributes:
        key: Name of the value queued (read from the outputs, then the batch).
        length: Rows this consumer needs.
        row_shape: Shape of one row, or ``None`` to infer it.
        dtype: Storage dtype, or ``None`` to use the first batch's.
        gather: Whether rows are gathered from all ranks before being queued.
    """

    key: str
    length: int
    row_shape: tuple[int, ...] | None = None
    dtype: torch.dtype | None = None
    gather: bool = False


def _agree(key: str, field: str, values: list[Any]) -> Any:
    chosen = {v for v in values if v is not None}
    if len(chosen) > 1:
        raise ValueError(
            f"Callbacks sharing the queue {key!r} disagree on {field}: {sorted(map(str, chosen))}. "
            f"Give them the same {field} (or None), or queue a differently named key."
        )
    return next(iter(chosen), None)


class _SharedQueue:
    """One key's ring buffer, shared by the consumers of the key in one trainer."""

    def __init__(self, buffer: RingBuffer, gather: bool) -> None:
        self.buffer = buffer
        self.gather = gather
        self.offers: dict[str, torch.Tensor] = {}  # checkpointed rows, by consumer state_key

    def resolve(self) -> None:
        """Load the longest checkpointed copy offered (ties: smallest state_key)."""
        if not self.offers:
            return
        who = min(self.offers, key=lambda k: (-self.offers[k].shape[0], k))
        rows, self.offers = self.offers[who], {}
        self.buffer.load(rows)


def _owner_order(callback: Callback) -> str:
    return f"{callback.state_key}|{type(callback).__qualname__}"


class QueueConsumer(Callback):
    """Base of callbacks that read training-time queues; see the module docstring for sharing."""

    def __init__(self) -> None:
        super().__init__()
        self._shared: dict[str, _SharedQueue] = {}
        self._owned: set[str] = set()
        self._linked_to: weakref.ref[Trainer] | None = None
        self._pending_rows: dict[str, torch.Tensor] = {}

    def queue_specs(self) -> list[QueueSpec]:
        """The queues this callback needs."""
        raise NotImplementedError

    def _describe(self) -> str:
        return type(self).__name__

    # ------------------------------------------------------------------ linking
    def _link_queues(self, trainer: Trainer) -> None:
        if self._linked_to is not None and self._linked_to() is trainer:
            return
        self._shared, self._owned = {}, set()
        self._linked_to = weakref.ref(trainer)
        for spec in self.queue_specs():
            consumers = [
                cb
                for cb in trainer.callbacks
                if isinstance(cb, QueueConsumer)
                and any(s.key == spec.key for s in cb.queue_specs())
            ] or [self]
            owner = min(consumers, key=_owner_order)
            if owner is self:
                specs = [s for cb in consumers for s in cb.queue_specs() if s.key == spec.key]
                users = ", ".join(sorted(cb._describe() for cb in consumers))
                buffer = RingBuffer(
                    length=max(s.length for s in specs),
                    row_shape=_agree(spec.key, "dim", [s.row_shape for s in specs]),
                    dtype=_agree(spec.key, "dtype", [s.dtype for s in specs]),
                    name=f"queue {spec.key!r} (used by {users})",
                )
                self._shared[spec.key] = _SharedQueue(buffer, any(s.gather for s in specs))
                self._owned.add(spec.key)
            else:
                owner._link_queues(trainer)
                self._shared[spec.key] = owner._shared[spec.key]
        self._offer_pending()

    def _offer_pending(self) -> None:
        for key, rows in self._pending_rows.items():
            if key in self._shared:
                self._shared[key].offers[self.state_key] = rows
            else:
                warnings.warn(
                    f"{self._describe()}: the checkpoint holds queue {key!r} but this callback "
                    "no longer reads that key; its rows are dropped.",
                    stacklevel=2,
                )
        self._pending_rows = {}

    def _buffer(self, key: str) -> RingBuffer:
        if key not in self._shared:
            raise RuntimeError(
                f"{self._describe()}: queue {key!r} is not set up yet; it is created when the "
                "callback is attached to a Trainer (setup)."
            )
        shared = self._shared[key]
        shared.resolve()
        return shared.buffer

    def _queue(self, key: str, last: int | None = None) -> torch.Tensor:
        return self._buffer(key).get(last)

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Link this callback's queues to the shared buffers of ``trainer.callbacks``."""
        self._link_queues(trainer)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Restore checkpointed rows and move owned queues to the module's device."""
        for key in sorted(self._owned):
            self._buffer(key).to(pl_module.device)

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Push this batch's rows into the queues this callback owns."""
        for key in sorted(self._owned):
            rows = read_key(outputs, batch, key, f"{self._describe()} queue")
            if not isinstance(rows, torch.Tensor):
                raise TypeError(
                    f"{self._describe()}: {key!r} must be a tensor to be queued, got "
                    f"{type(rows).__name__}."
                )
            rows = rows.detach()
            if self._shared[key].gather:
                rows = gather_rows(rows, trainer)
            self._buffer(key).push(rows)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Rows of the queues this callback owns (oldest first, CPU)."""
        if self._linked_to is None:
            return {"queues": dict(self._pending_rows)}
        return {"queues": {key: self._buffer(key).state() for key in sorted(self._owned)}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Offer the saved rows to the shared queues (restored at first use, in any order)."""
        self._pending_rows = dict(state_dict.get("queues", {}))
        if self._linked_to is not None:
            self._offer_pending()


class OnlineQueue(QueueConsumer):
    """Queue of the most recent ``queue_length`` training rows of ``outputs[key]``.

    Implements ``ssl_core.queues.QueueProvider``: a forward reads the queue with
    ``ssl_core.queues.find_queue(self, key)`` (NNCLR's support set). The rows live on the module's
    device, are saved in checkpoints, and are shared with other consumers of the same key (see the
    module docstring).

    Args:
        key: Name of the value queued, looked up in the training step's outputs then the batch.
        queue_length: Number of rows kept (oldest dropped first).
        dim: Feature dimension (rows are ``[dim]``), or ``None`` to infer from the first batch.
        dtype: Storage dtype, or ``None`` to keep the first batch's dtype.
        gather_distributed: Gather rows from all ranks before queueing (every rank then holds the
            same queue).

    Example:
        >>> queue = OnlineQueue(key="nnclr_support_set", queue_length=16384, dim=256)
        >>> # Trainer(callbacks=[queue]); in the forward: find_queue(self, "nnclr_support_set")
    """

    def __init__(
        self,
        key: str,
        queue_length: int,
        dim: int | None = None,
        dtype: torch.dtype | None = None,
        gather_distributed: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(key, str) or not key:
            raise ValueError(f"OnlineQueue: key must be a non-empty string, got {key!r}.")
        if int(queue_length) < 1:
            raise ValueError(
                f"OnlineQueue({key!r}): queue_length must be >= 1, got {queue_length}."
            )
        if dim is not None and int(dim) < 1:
            raise ValueError(f"OnlineQueue({key!r}): dim must be >= 1 or None, got {dim}.")
        self.key = key
        self.queue_length = int(queue_length)
        self.dim = None if dim is None else int(dim)
        self.dtype = dtype
        self.gather_distributed = bool(gather_distributed)

    @property
    def state_key(self) -> str:
        """Unique per key and length, so several queues coexist in one checkpoint."""
        return f"OnlineQueue[key={self.key},queue_length={self.queue_length}]"

    def _describe(self) -> str:
        return f"OnlineQueue({self.key!r})"

    def queue_specs(self) -> list[QueueSpec]:
        """One request: the queue of ``key``."""
        row_shape = None if self.dim is None else (self.dim,)
        return [
            QueueSpec(self.key, self.queue_length, row_shape, self.dtype, self.gather_distributed)
        ]

    def provides_queue(self, key: str) -> bool:
        """Whether this callback queues ``key``."""
        return key == self.key

    def get_queue(self, key: str) -> torch.Tensor:
        """Return the newest ``queue_length`` rows of ``key``, oldest first, ``[n, dim]``."""
        if key != self.key:
            raise KeyError(f"OnlineQueue({self.key!r}) does not hold a queue named {key!r}.")
        return self._queue(key, last=self.queue_length)
