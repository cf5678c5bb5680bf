"""Input validation and dtype handling shared by the losses (internal)."""

from __future__ import annotations

import math

import torch

#: eps used when L2-normalising embeddings, so zero vectors give zeros rather than NaN.
NORM_EPS = 1e-8


def check_positive(owner: str, name: str, value: float) -> float:
    """Return ``float(value)`` or raise ValueError if it is not a finite number > 0."""
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value}; pass e.g. 0.1")
    return value


def check_non_negative(owner: str, name: str, value: float) -> float:
    """Return ``float(value)`` or raise ValueError if it is negative or not finite."""
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{owner}: {name} must be a finite number >= 0, got {value}; "
            "use 0 to switch the term off, never a negative weight"
        )
    return value


def check_embedding(owner: str, name: str, t: object) -> torch.Tensor:
    """Check that ``t`` is a 2-D floating-point tensor ``[batch, dim]``."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{owner}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(
            f"{owner}: {name} must be 2-D [batch, dim], got shape {tuple(t.shape)}; "
            f"flatten the feature dimensions first, e.g. {name}.flatten(1)"
        )
    if not t.is_floating_point():
        raise ValueError(
            f"{owner}: {name} must be a floating-point tensor, got {t.dtype}; cast it with .float()"
        )
    return t


def check_pair(owner: str, a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    """Check two views: both 2-D floating point and of the same shape."""
    check_embedding(owner, names[0], a)
    check_embedding(owner, names[1], b)
    if a.shape != b.shape:
        raise ValueError(
            f"{owner}: the two views must have the same shape, got {names[0]} {tuple(a.shape)} "
            f"and {names[1]} {tuple(b.shape)}; pass embeddings of the same samples (row i of "
            "each view is the same sample) from the same projector"
        )


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """Return the dtype to compute in: the promoted dtype, at least float32."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.promote_types(dtype, torch.float32)


def check_min_batch(owner: str, n_global: int, minimum: int) -> None:
    """Raise ValueError if the (global) batch is too small for the statistics a loss needs."""
    if n_global < minimum:
        raise ValueError(
            f"{owner}: needs at least {minimum} samples in the global batch to estimate a "
            f"per-dimension variance, got {n_global}; increase the batch size (or drop the last "
            "incomplete batch with drop_last=True)"
        )


def check_tensor(owner: str, name: str, t: object, dims: int, layout: str) -> torch.Tensor:
    """Check that ``t`` is a floating-point tensor with ``dims`` dimensions, named by ``layout``."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{owner}: {name} must be a torch.Tensor {layout}, got {type(t).__name__}")
    if t.dim() != dims:
        raise ValueError(
            f"{owner}: {name} must be {dims}-D {layout}, got shape {tuple(t.shape)}; pass one "
            f"tensor {layout} per view (not the views concatenated or stacked)"
        )
    if not t.is_floating_point():
        raise ValueError(
            f"{owner}: {name} must be a floating-point tensor, got {t.dtype}; cast it with .float()"
        )
    return t


def check_views(
    owner: str, name: str, views: object, dims: int, layout: str, allow_empty: bool = False
) -> list[torch.Tensor]:
    """Check a list of per-view tensors: a list/tuple, each ``dims``-D floating point, one shape.

    Returns:
        The views as a list.
    """
    if isinstance(views, torch.Tensor) or not isinstance(views, list | tuple):
        raise ValueError(
            f"{owner}: {name} must be a list with one tensor {layout} per view, got "
            f"{type(views).__name__}; split a concatenated batch with list(x.chunk(n_views))"
        )
    if not views and not allow_empty:
        raise ValueError(f"{owner}: {name} is an empty list; pass at least one view {layout}")
    views = list(views)
    for i, v in enumerate(views):
        check_tensor(owner, f"{name}[{i}]", v, dims, layout)
        if v.shape != views[0].shape:
            raise ValueError(
                f"{owner}: every view in {name} must have the same shape, got {name}[0] "
                f"{tuple(views[0].shape)} and {name}[{i}] {tuple(v.shape)}; row i of every view "
                "is the same sample, from the same head"
            )
    return views
