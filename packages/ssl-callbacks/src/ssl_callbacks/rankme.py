"""RankMe (Garrido et al., 2023): effective rank of a queue of embeddings, a collapse alarm."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer

from ssl_callbacks._keys import read_key
from ssl_callbacks.queue import QueueConsumer, QueueSpec


def rankme(embeddings: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Effective rank ``exp(-sum p_k log p_k)`` with ``p_k = s_k / ||s||_1 + eps``.

    Args:
        embeddings: ``[n, D]`` embeddings.
        eps: Added to the normalised singular values, as in the paper.

    Returns:
        A scalar float32 tensor in ``[1, min(n, D)]`` (up to ``eps``).

    Example:
        >>> float(rankme(torch.eye(4))) == pytest.approx(4.0)  # doctest: +SKIP
    """
    if embeddings.dim() != 2 or embeddings.shape[0] == 0:
        raise ValueError(
            f"rankme: expected non-empty [n, D] embeddings, got {list(embeddings.shape)}."
        )
    s = torch.linalg.svdvals(embeddings.detach().double())
    p = s / s.sum().clamp_min(torch.finfo(torch.float64).tiny) + eps
    return torch.exp(-(p * torch.log(p)).sum()).float()


class RankMe(QueueConsumer):
    """Log ``val/{name}``: RankMe of the last ``queue_length`` training embeddings.

    Embeddings are queued from training batches (gathered across ranks, shared with other
    consumers of the key) and the effective rank is computed once at the end of each validation
    epoch. A value far below ``min(queue_length, D)`` signals dimensional collapse.

    Args:
        name: Logged name (``val/{name}``) and checkpoint ``state_key``.
        input: Key of the embeddings ``[B, D]`` (outputs first, then batch).
        queue_length: Number of recent embeddings used; should exceed D.

    Example:
        >>> monitor = RankMe("rankme", input="embedding", queue_length=4096)
    """

    def __init__(self, name: str, input: str, queue_length: int) -> None:
        super().__init__()
        if int(queue_length) < 2:
            raise ValueError(f"RankMe({name!r}): queue_length must be >= 2, got {queue_length}.")
        self.name = name
        self.input = input
        self.queue_length = int(queue_length)

    @property
    def state_key(self) -> str:
        """Unique per name."""
        return f"RankMe[{self.name}]"

    def _describe(self) -> str:
        return f"RankMe({self.name!r})"

    def queue_specs(self) -> list[QueueSpec]:
        """Embeddings, float32, gathered across ranks."""
        return [QueueSpec(self.input, self.queue_length, None, torch.float32, True)]

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Check the embedding's shape, then queue it if this callback owns the key."""
        x = read_key(outputs, batch, self.input, self._describe())
        if not isinstance(x, torch.Tensor) or x.dim() != 2:
            shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self._describe()}: {self.input!r} must be [B, D], got {shape}.")
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compute and log the effective rank of the queue."""
        feats = self._queue(self.input, self.queue_length)
        if feats.shape[0] == 0:
            if trainer.sanity_checking:
                return
            warnings.warn(
                f"{self._describe()}: no training embeddings queued yet; skipped.", stacklevel=2
            )
            return
        if not bool(torch.isfinite(feats).all()):  # one read per validation, not per batch
            raise ValueError(
                f"{self._describe()}: the queued training embeddings {self.input!r} hold NaN or "
                "Inf; training diverged (lower the learning rate, clip gradients, use bf16 "
                "instead of fp16) or the data holds NaN."
            )
        pl_module.log(f"val/{self.name}", rankme(feats), sync_dist=False)
