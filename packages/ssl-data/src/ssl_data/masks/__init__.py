"""Patch masks for masked-image pre-training (MAE, iBOT, I-JEPA) and patchify/unpatchify.

Pure tensor operations: the generators know patch grids, not models. Every generator is
batched, draws from an optional seeded ``torch.Generator`` and returns tensors on the requested
device; boolean masks are ``[N, L]`` with True = masked (or selected), ``L = gh * gw`` patches in
raster order.

Example:
    >>> import torch
    >>> from ssl_data import masks
    >>> grid = masks.patch_grid(28, 4)
    >>> g = torch.Generator().manual_seed(0)
    >>> masks.RandomMasking(0.75)(8, grid[0] * grid[1], generator=g).mask.shape
    torch.Size([8, 49])
"""

from ssl_data.masks._common import indices_to_mask
from ssl_data.masks.block import BlockMasking
from ssl_data.masks.multiblock import MultiBlockMask, MultiBlockMasking, block_size
from ssl_data.masks.patches import patch_grid, patchify, unpatchify
from ssl_data.masks.random_patch import RandomMask, RandomMasking

__all__ = [
    "BlockMasking",
    "MultiBlockMask",
    "MultiBlockMasking",
    "RandomMask",
    "RandomMasking",
    "block_size",
    "indices_to_mask",
    "patch_grid",
    "patchify",
    "unpatchify",
]
