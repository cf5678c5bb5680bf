"""Fixed 2-D sine-cosine position embeddings (the MAE / I-JEPA decoder and predictor tables)."""

from __future__ import annotations

import torch

__all__ = ["sincos_pos_embed_2d"]


def _sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """``[P, dim]``: ``sin(p * w_k)`` then ``cos(p * w_k)``, ``w_k = 10000^(-k / (dim/2))``."""
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Sine-cosine embedding of a ``(gh, gw)`` patch grid, ``[gh * gw, dim]`` float32, raster order.

    The first half of the channels encodes the column, the second half the row, as in the
    official MAE and I-JEPA code.

    Args:
        dim: Embedding width; must be divisible by 4.
        grid: ``(gh, gw)``.

    Returns:
        ``[gh * gw, dim]``.

    Raises:
        ValueError: ``dim`` is not divisible by 4.

    Example:
        >>> sincos_pos_embed_2d(8, (2, 3)).shape
        torch.Size([6, 8])
    """
    if dim % 4:
        raise ValueError(
            f"a 2-D sine-cosine position embedding needs a width divisible by 4, got {dim}; "
            "choose a decoder/predictor width such as 128, 192 or 256."
        )
    gh, gw = grid
    rows = torch.arange(gh).repeat_interleave(gw)
    cols = torch.arange(gw).repeat(gh)
    emb = torch.cat([_sincos_1d(dim // 2, cols), _sincos_1d(dim // 2, rows)], dim=1)
    return emb.to(torch.float32)
