"""Pre-norm transformer blocks shared by the MAE decoder and the I-JEPA predictor."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["check_depth_heads", "init_weights", "transformer_blocks", "xavier_init"]


def check_depth_heads(owner: str, dim: int, depth: int, num_heads: int, fix: str) -> None:
    """Reject a depth below 1 or a width not divisible by the number of heads."""
    if depth < 1:
        raise ValueError(
            f"{owner} depth must be >= 1 (it is a stack of transformer blocks), got {depth}; {fix}"
        )
    if num_heads < 1 or dim % num_heads:
        raise ValueError(
            f"{owner} width {dim} must be divisible by num_heads={num_heads}; pick num_heads "
            f"that divides {dim} (e.g. {math.gcd(dim, 4) or 1})."
        )


def transformer_blocks(
    dim: int, depth: int, num_heads: int, mlp_ratio: float, *, init: str
) -> nn.ModuleList:
    """``depth`` pre-norm blocks (attention + GELU MLP, LayerNorm eps 1e-6) as in timm's ``Block``.

    The blocks are torch's own ``TransformerEncoderLayer`` (``norm_first=True``), so these
    modules need no timm. ``init="xavier"`` is the official MAE initialisation;
    ``init="trunc_normal"`` the official I-JEPA one (std 0.02, residual output projections scaled
    by ``1/sqrt(2 * layer)``).
    """
    blocks = nn.ModuleList(
        nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=num_heads,
            dim_feedforward=int(dim * mlp_ratio),
            dropout=0.0,
            activation="gelu",
            layer_norm_eps=1e-6,
            batch_first=True,
            norm_first=True,
        )
        for _ in range(depth)
    )
    if init == "xavier":
        for block in blocks:
            block.apply(xavier_init)
        return blocks
    for block in blocks:
        block.apply(init_weights)
    with torch.no_grad():
        for layer, block in enumerate(blocks, start=1):
            block.self_attn.out_proj.weight.div_(math.sqrt(2.0 * layer))
            block.linear2.weight.div_(math.sqrt(2.0 * layer))
    return blocks


def init_weights(module: nn.Module) -> None:
    """Truncated-normal (std 0.02) linear weights, zero biases, unit LayerNorm (MAE/I-JEPA)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention):
        nn.init.trunc_normal_(module.in_proj_weight, std=0.02)
        nn.init.zeros_(module.in_proj_bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform linear weights, zero biases, unit LayerNorm (official MAE)."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention):
        nn.init.xavier_uniform_(module.in_proj_weight)
        nn.init.zeros_(module.in_proj_bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
