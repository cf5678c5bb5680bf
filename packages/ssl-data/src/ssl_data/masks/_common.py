"""Shared helpers of the mask generators: argument checks and seeded draws on a device."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

__all__ = [
    "SeededStream",
    "check_grid",
    "check_range",
    "indices_to_mask",
    "resolve_device",
    "uniform",
]


def resolve_device(
    device: torch.device | str | None, generator: torch.Generator | None
) -> torch.device:
    """The device the masks are returned on: ``device``, else the generator's, else CPU."""
    if device is not None:
        return torch.device(device)
    if generator is not None:
        return generator.device
    return torch.device("cpu")


def uniform(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``U(0, 1)`` draws of ``shape`` on ``device``.

    The numbers are drawn on the generator's device and then moved, so one seed gives the same
    masks on every device.
    """
    source = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=source).to(device)


def check_grid(grid: Sequence[int] | int, name: str) -> tuple[int, int]:
    """Validate a patch grid ``(gh, gw)`` (an int means a square grid)."""
    if isinstance(grid, int):
        grid = (grid, grid)
    gh, gw = (int(g) for g in grid)
    if gh < 1 or gw < 1:
        raise ValueError(
            f"{name}: the patch grid must be at least 1 x 1, got {gh} x {gw}; pass "
            "grid=(image_height // patch_size, image_width // patch_size)."
        )
    return gh, gw


def check_range(
    value: Sequence[float], name: str, low: float, high: float, *, positive: bool = False
) -> tuple[float, float]:
    """Validate an interval ``(a, b)`` with ``low <= a <= b <= high`` (``a > 0`` if positive)."""
    a, b = (float(v) for v in value)
    if not (low <= a <= b <= high) or (positive and a <= 0):
        bound = "(0" if positive else f"[{low}"
        raise ValueError(
            f"{name} must be an interval (min, max) with min <= max inside {bound}, {high}], "
            f"got ({a}, {b})."
        )
    return a, b


def indices_to_mask(indices: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Turn patch indices ``[N, K]`` into a boolean mask ``[N, L]`` (True at the indices).

    Example:
        >>> indices_to_mask(torch.tensor([[0, 2]]), 4).tolist()
        [[True, False, True, False]]
    """
    mask = torch.zeros(indices.shape[0], num_patches, dtype=torch.bool, device=indices.device)
    return mask.scatter_(1, indices, True)


_STREAM_SALT = 0x6D61736B  # keeps the mask stream apart from a MultiViewAugment of the same seed


class SeededStream:
    """An optional own random stream for a mask generator, different on every process.

    With ``seed=None`` the generator draws from the global RNG of the device (or from the
    ``generator`` passed to a call). With a seed it keeps one ``torch.Generator`` per device type,
    seeded from ``seed + rank`` on first use, so DDP ranks, which share the global seed, draw
    different masks (as ``ssl_data.MultiViewAugment`` does for views); the seed is salted so
    that masks and views of one ``seed`` do not draw the same numbers.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = None if seed is None else int(seed)
        self._generators: dict[str, torch.Generator] = {}

    def stream(
        self, generator: torch.Generator | None, device: torch.device
    ) -> torch.Generator | None:
        """The generator a call draws from: ``generator``, else the own one, else ``None``."""
        if generator is not None or self.seed is None:
            return generator
        own = self._generators.get(device.type)
        if own is None:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
            own = torch.Generator(device=device).manual_seed((self.seed + rank) ^ _STREAM_SALT)
            self._generators[device.type] = own
        return own
