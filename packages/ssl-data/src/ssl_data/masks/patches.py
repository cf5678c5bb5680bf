"""Image <-> patch sequence conversion (the MAE ordering) and the patch-grid check."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["patch_grid", "patchify", "unpatchify"]


def patch_grid(image_size: int | Sequence[int], patch_size: int | None) -> tuple[int, int]:
    """Number of patches along the height and width of an image.

    Args:
        image_size: ``H`` (square) or ``(H, W)`` in pixels.
        patch_size: Side of a square patch in pixels.

    Returns:
        ``(H // patch_size, W // patch_size)``.

    Raises:
        ValueError: ``patch_size`` is ``None`` or ``< 1``, or a side is not divisible by it.

    Example:
        >>> patch_grid(28, 4)
        (7, 7)
    """
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    h, w = (int(s) for s in image_size)
    if patch_size is None:
        raise ValueError(
            "patch_size is None: the backbone has no patch size, and masked-image methods (MAE, "
            "I-JEPA, iBOT) need a Vision Transformer; in ssl-train use backbone=vit_tiny (or "
            "vit_small)."
        )
    if patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer, got {patch_size}.")
    if h % patch_size or w % patch_size or h < patch_size or w < patch_size:
        raise ValueError(
            f"image size {h} x {w} is not divisible by the patch size {patch_size}; resize or "
            f"crop the images to a multiple of {patch_size} (e.g. "
            f"{max(1, h // patch_size) * patch_size} x {max(1, w // patch_size) * patch_size}) "
            "or choose a patch size that divides both sides."
        )
    return h // patch_size, w // patch_size


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut ``[N, C, H, W]`` images into ``[N, L, p*p*C]`` patch rows in raster order.

    Patch ``l = i * W/p + j`` holds the pixels of row-block ``i`` and column-block ``j``, flattened
    as ``(p_row, p_col, channel)`` (the official MAE order, so ``norm_pix_loss`` statistics are per
    patch over all its pixels and channels).

    Args:
        images: ``[N, C, H, W]`` tensor; ``H`` and ``W`` divisible by ``patch_size``.
        patch_size: Side ``p`` of a square patch.

    Returns:
        ``[N, (H/p)*(W/p), p*p*C]``.

    Raises:
        ValueError: ``images`` is not 4-D or its size is not divisible by ``patch_size``.

    Example:
        >>> patchify(torch.zeros(2, 3, 8, 12), 4).shape
        torch.Size([2, 6, 48])
    """
    if images.ndim != 4:
        raise ValueError(
            f"patchify expects images [N, C, H, W], got shape {tuple(images.shape)}; add a "
            "batch dimension with images.unsqueeze(0)."
        )
    n, c, h, w = images.shape
    gh, gw = patch_grid((h, w), patch_size)
    x = images.reshape(n, c, gh, patch_size, gw, patch_size)
    x = x.permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, gh * gw, patch_size * patch_size * c)


def unpatchify(
    patches: torch.Tensor, patch_size: int, grid: Sequence[int] | None = None
) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[N, L, p*p*C]`` back to ``[N, C, H, W]``.

    Args:
        patches: ``[N, L, p*p*C]`` patch rows in raster order.
        patch_size: Side ``p`` of a square patch.
        grid: ``(H/p, W/p)``; ``None`` means a square grid (``L`` must be a perfect square).

    Returns:
        ``[N, C, gh*p, gw*p]``.

    Raises:
        ValueError: The shapes do not fit ``patch_size`` and ``grid``.

    Example:
        >>> x = torch.randn(2, 3, 8, 12)
        >>> bool((unpatchify(patchify(x, 4), 4, grid=(2, 3)) == x).all())
        True
    """
    if patches.ndim != 3:
        raise ValueError(
            f"unpatchify expects patches [N, L, p*p*C], got shape {tuple(patches.shape)}."
        )
    n, length, dim = patches.shape
    if grid is None:
        side = round(length**0.5)
        if side * side != length:
            raise ValueError(
                f"unpatchify: {length} patches do not form a square grid; pass grid=(gh, gw)."
            )
        grid = (side, side)
    gh, gw = (int(g) for g in grid)
    if gh * gw != length or dim % (patch_size * patch_size):
        raise ValueError(
            f"unpatchify: patches of shape {tuple(patches.shape)} do not fit grid {gh} x {gw} "
            f"and patch size {patch_size} (need L = gh * gw and a row width divisible by "
            f"{patch_size * patch_size})."
        )
    c = dim // (patch_size * patch_size)
    x = patches.reshape(n, gh, gw, patch_size, patch_size, c)
    x = x.permute(0, 5, 1, 3, 2, 4)
    return x.reshape(n, c, gh * patch_size, gw * patch_size)
