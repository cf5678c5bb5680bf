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


def label_dtype(labels: Any, owner: str) -> torch.Tensor:
    """Check that ``labels`` is an integer tensor (metadata only, no device sync).

    Args:
        labels: Label tensor, any shape.
        owner: Who asks (used in the error message).

    Returns:
        The labels as a flat ``int64`` tensor.

    Raises:
        TypeError: The labels are not an integer tensor.
    """
    if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex():
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise TypeError(
            f"{owner}: labels must be an integer tensor of class indices, got {got}. Convert them "
            "with .long() in your dataset or forward, or point `target` at the class-index key."
        )
    return labels.reshape(-1).long()


def _range_error(owner: str, low: int, high: int, num_classes: int | None, where: str) -> None:
    if low < 0:
        raise ValueError(
            f"{owner}: got a negative label ({low}){where}; labels must be class indices in "
            "[0, C). Remap them in your dataset (e.g. ignore-labels to a real class or drop them)."
        )
    if num_classes is not None and high >= num_classes:
        raise ValueError(
            f"{owner}: got label {high}{where} but num_classes={num_classes}; labels must be in "
            f"[0, {num_classes}). Pass num_classes={high + 1} or more (data.num_classes in "
            "ssl-train), or fix the labels."
        )


def check_labels(labels: Any, owner: str, num_classes: int | None = None) -> torch.Tensor:
    """Check that ``labels`` are integer class indices in ``[0, num_classes)``.

    This reads the labels' range on the host (a device sync): call it at validation or logging
    time only; training hooks use :class:`DeferredChecks`.

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
    labels = label_dtype(labels, owner)
    if labels.numel() == 0:
        return labels
    low, high = torch.aminmax(labels)
    _range_error(owner, int(low), int(high), num_classes, "")
    return labels


class DeferredChecks:
    """Label-range and finiteness checks of training batches, kept on the device.

    ``update_*`` only launches reductions (no host read), so a training batch hook never waits
    for the device; :meth:`verify` reads the flags once (at validation or epoch end) and raises.
    """

    def __init__(self) -> None:
        self._low: torch.Tensor | None = None
        self._high: torch.Tensor | None = None
        self._nonfinite: torch.Tensor | None = None

    def update_labels(self, labels: torch.Tensor) -> None:
        """Fold the batch's smallest and largest label into the running ones."""
        if labels.numel() == 0:
            return
        low, high = torch.aminmax(labels)
        self._low = low if self._low is None else torch.minimum(self._low, low)
        self._high = high if self._high is None else torch.maximum(self._high, high)

    def update_features(self, x: torch.Tensor) -> None:
        """Remember whether the batch's features hold a NaN or an Inf."""
        bad = ~torch.isfinite(x).all()
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad

    def verify(self, owner: str, num_classes: int | None, key: str) -> None:
        """Raise if a batch seen since the last call had a bad label or non-finite feature.

        Args:
            owner: Who asks (used in the message).
            num_classes: Upper bound of the labels, or ``None``.
            key: Name of the features, for the message.

        Raises:
            ValueError: A label was outside ``[0, num_classes)`` or a feature was NaN/Inf.
        """
        low, high, nonfinite = self._low, self._high, self._nonfinite
        self._low = self._high = self._nonfinite = None
        if nonfinite is not None and bool(nonfinite):
            raise ValueError(
                f"{owner}: the training features {key!r} held NaN or Inf in a batch since the "
                "last check; the callback cannot learn from them. Stabilise the model (lower "
                "learning rate, gradient clipping, bf16 instead of fp16) or check the input data."
            )
        if low is not None and high is not None:
            where = " in a training batch since the last check"
            _range_error(owner, int(low), int(high), num_classes, where)
