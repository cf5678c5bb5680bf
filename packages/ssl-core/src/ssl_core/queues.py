"""Lookup of named queues held by callbacks (NNCLR's support set, kNN banks).

A queue lives inside a callback instance of the trainer it belongs to, never in class-level or
module-level state, so two trainers in one process never see each other's queues. Forward
functions read a queue through :func:`find_queue` (or ``Module.get_queue``) without importing the
callbacks package: any callback implementing :class:`QueueProvider` can serve one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from lightning.pytorch import LightningModule, Trainer


@runtime_checkable
class QueueProvider(Protocol):
    """A trainer callback that holds one or more named queues."""

    def provides_queue(self, key: str) -> bool:
        """Return whether this object holds the queue named ``key``."""
        ...

    def get_queue(self, key: str) -> torch.Tensor:
        """Return the queue ``key`` as ``[n, dim]`` rows, oldest first (``n`` may be 0)."""
        ...


def _trainer_of(owner: LightningModule | Trainer) -> Trainer:
    trainer = getattr(owner, "trainer", owner) if not hasattr(owner, "callbacks") else owner
    if trainer is None or not hasattr(trainer, "callbacks"):
        raise RuntimeError(
            "find_queue needs a module attached to a Trainer (call it from inside a training, "
            "validation or test step), or the Trainer itself."
        )
    return trainer


def find_queue(owner: LightningModule | Trainer, key: str) -> torch.Tensor:
    """Return the contents of the queue named ``key`` among the trainer's callbacks.

    Args:
        owner: The LightningModule running the step (``self`` in a forward) or its Trainer.
        key: The queue's key, e.g. ``"nnclr_support_set"``.

    Returns:
        The queued rows, oldest first, shape ``[n, dim]``; ``n`` is 0 before anything was queued.

    Raises:
        LookupError: No callback of the trainer holds a queue named ``key``.

    Example:
        >>> support = find_queue(self, "nnclr_support_set")  # doctest: +SKIP
    """
    trainer = _trainer_of(owner)
    for callback in trainer.callbacks:
        if isinstance(callback, QueueProvider) and callback.provides_queue(key):
            return callback.get_queue(key)
    raise LookupError(
        f"No queue named {key!r} among the trainer's callbacks. Add "
        f'ssl_callbacks.OnlineQueue(key="{key}", queue_length=..., dim=...) to '
        "Trainer(callbacks=[...])."
    )
