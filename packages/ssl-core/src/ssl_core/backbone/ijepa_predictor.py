"""The I-JEPA predictor: context tokens and mask tokens at the target positions, a narrow ViT."""

from __future__ import annotations

import torch
from torch import nn

from ssl_core.backbone._transformer import check_depth_heads, init_weights, transformer_blocks
from ssl_core.backbone.pos_embed import sincos_pos_embed_2d

__all__ = ["IJEPAPredictor"]


def _gather(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(tokens, 1, index[:, :, None].expand(-1, -1, tokens.shape[2]))


class IJEPAPredictor(nn.Module):
    """Narrow ViT predictor of I-JEPA (Assran et al. 2023), conditioned on the target positions.

    The context encoder's tokens are embedded to ``predictor_dim`` and get the position embedding
    of their patches; one mask token per target patch gets the position embedding of that patch;
    ``depth`` transformer blocks run on the concatenation and the outputs at the target positions
    are projected back to ``embed_dim`` (the target encoder's width).

    Args:
        embed_dim: Width of the encoder tokens (input and output).
        grid: ``(gh, gw)`` patch grid of the training images.
        predictor_dim: Predictor width (official ViT-H recipe: 384, narrower than the encoder).
        depth: Predictor blocks (official: 12; must be >= 1).
        num_heads: Attention heads.
        mlp_ratio: MLP hidden width / ``predictor_dim``.

    Raises:
        ValueError: ``depth < 1`` or a width not divisible by the heads or by 4.

    Example:
        >>> pred = IJEPAPredictor(32, (4, 4), predictor_dim=16, depth=1, num_heads=2)
        >>> ctx, tgt = torch.tensor([[0, 1, 2, 5]]), torch.tensor([[10, 11]])
        >>> pred(torch.randn(1, 4, 32), ctx, tgt).shape
        torch.Size([1, 2, 32])
    """

    def __init__(
        self,
        embed_dim: int,
        grid: tuple[int, int],
        predictor_dim: int = 384,
        depth: int = 6,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        check_depth_heads(
            "IJEPAPredictor",
            predictor_dim,
            depth,
            num_heads,
            "set predictor depth to 1 or more (the paper uses 6-12; 2-4 for tiny ViTs).",
        )
        gh, gw = (int(g) for g in grid)
        self.grid = (gh, gw)
        self.num_patches = gh * gw
        self.embed = nn.Linear(embed_dim, predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_dim))
        self.register_buffer(
            "pos_embed", sincos_pos_embed_2d(predictor_dim, self.grid)[None], persistent=False
        )
        self.blocks = transformer_blocks(
            predictor_dim, depth, num_heads, mlp_ratio, init="trunc_normal"
        )
        self.norm = nn.LayerNorm(predictor_dim, eps=1e-6)
        self.proj = nn.Linear(predictor_dim, embed_dim)
        self.embed.apply(init_weights)
        self.proj.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(
        self, context: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor
    ) -> torch.Tensor:
        """Predict the target encoder's tokens at ``target_idx``.

        Args:
            context: ``[B, Kc, embed_dim]`` context encoder patch tokens.
            context_idx: ``[B, Kc]`` patch index of each context token.
            target_idx: ``[B, Kt]`` patch indices to predict.

        Returns:
            ``[B, Kt, embed_dim]`` predictions, in the order of ``target_idx``.

        Raises:
            ValueError: The index tensors do not match ``context``.
        """
        b, kc, _ = context.shape
        if context_idx.shape != (b, kc) or target_idx.ndim != 2 or target_idx.shape[0] != b:
            raise ValueError(
                f"IJEPAPredictor: context {tuple(context.shape)}, context_idx "
                f"{tuple(context_idx.shape)} and target_idx {tuple(target_idx.shape)} do not "
                "match; pass [B, Kc, D], [B, Kc] and [B, Kt]."
            )
        pos = self.pos_embed.expand(b, -1, -1).to(context.dtype)
        x = self.embed(context) + _gather(pos, context_idx)
        queries = self.mask_token.to(x.dtype) + _gather(pos, target_idx)
        x = torch.cat([x, queries], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.proj(self.norm(x[:, kc:]))
