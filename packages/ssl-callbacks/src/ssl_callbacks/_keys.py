"""Reading named values from a step's outputs and batch, and checking class labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


class MissingKeyError(KeyError):
    """A key named by a callback is in neither the step's outputs nor the batch."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _keys_of(obj: Any) -> list[str]:
    return sorted(str(k) for k in obj) if isinstance(obj, Mapping) else []


def read_key(outputs: Any, batch: Any, key: str, owner: str) -> Any:
    """Return ``outputs[key]`` if present, else ``batch[key]``.

    Args:
        outputs: What the step returned (a dict, a tensor or ``None``).
        batch: The batch the step received.
        key: The name to look up.
        owner: Who asks (used in the error message), e.g. ``"OnlineKNN('knn') input"``.

    Returns:
        The value stored under ``key``.

    Raises:
        MissingKeyError: ``key`` is in neither; the message lists the keys that are present.
    """
    if isinstance(outputs, Mapping) and key in outputs:
        return outputs[key]
    if isinstance(batch, Mapping) and key in batch:
        return batch[key]
    raise MissingKeyError(
        f"{owner}: key {key!r} is in neither the step's outputs (keys: {_keys_of(outputs)}) nor "
        f"the batch (keys: {_keys_of(batch)}). Return {key!r} from your forward's output dict, "
        "or point the callback at one of the keys listed."
    )


def check_labels(labels: torch.Tensor, owner: str, num_classes: int | None = None) -> torch.Tensor:
    """Check that ``labels`` are integer class indices in ``[0, num_classes)``.

    Args:
        labels: Label tensor, any shape (flattened to ``[B]``).
        owner: Who asks (used in the error message).
        num_classes: Upper bound (exclusive), or ``None`` to check only the lower bound.

    Returns:
        The labels as a flat ``int64`` tensor.

    Raises:
        TypeError: The labels are not an integer tensor.
        ValueError: A label is negative or ``>= num_classes``.
    """
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(
            f"{owner}: labels must be an integer tensor of class indices, got {got}. Convert them "
            "with .long() in your dataset or forward, or point `target` at the class-index key."
        )
    labels = labels.reshape(-1).long()
    if labels.numel() == 0:
        return labels
    low, high = int(labels.min()), int(labels.max())
    if low < 0:
        raise ValueError(f"{owner}: got a negative label ({low}); labels must be in [0, C).")
    if num_classes is not None and high >= num_classes:
        raise ValueError(
            f"{owner}: got label {high} but num_classes={num_classes}; labels must be in "
            f"[0, {num_classes}). Pass num_classes={high + 1} or more."
        )
    return labels
