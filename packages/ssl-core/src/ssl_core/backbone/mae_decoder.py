"""The MAE lightweight decoder: visible tokens + mask tokens, unshuffled, to pixels per patch."""

from __future__ import annotations

import torch
from torch import nn

from ssl_core.backbone._transformer import check_depth_heads, transformer_blocks, xavier_init
from ssl_core.backbone.pos_embed import sincos_pos_embed_2d

__all__ = ["MAEDecoder"]


class MAEDecoder(nn.Module):
    """Lightweight MAE decoder (He et al. 2022).

    The encoder's visible tokens are embedded to ``decoder_dim``, a shared learnable mask token
    fills the removed positions, the sequence is put back in patch order with the masking's
    ``restore`` indices, the position embedding is added, and ``depth`` transformer blocks and a
    linear head predict the ``patch_size**2 * in_channels`` pixel values of every patch. Prefix
    tokens (the CLS token) pass through the blocks with a zero position embedding and are dropped
    at the end, as in the official code.

    Args:
        embed_dim: Width of the encoder tokens.
        grid: ``(gh, gw)`` patch grid of the training images.
        patch_size: Side of a patch in pixels (the encoder's).
        in_channels: Image channels.
        decoder_dim: Decoder width (official ViT-B recipe: 512).
        depth: Decoder blocks (official: 8).
        num_heads: Attention heads (official: 16).
        mlp_ratio: MLP hidden width / ``decoder_dim``.
        pos_embed: ``"sincos"`` (fixed, official) or ``"learned"``.

    Raises:
        ValueError: ``depth < 1``, a width not divisible by the heads (or by 4 for
            ``"sincos"``), or an unknown ``pos_embed``.

    Example:
        >>> dec = MAEDecoder(32, (4, 4), 4, 1, decoder_dim=16, depth=1, num_heads=2)
        >>> restore = torch.argsort(torch.rand(2, 16), dim=1)
        >>> dec(torch.randn(2, 4, 32), restore).shape
        torch.Size([2, 16, 16])
    """

    def __init__(
        self,
        embed_dim: int,
        grid: tuple[int, int],
        patch_size: int,
        in_channels: int,
        decoder_dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        pos_embed: str = "sincos",
    ) -> None:
        super().__init__()
        check_depth_heads(
            "MAEDecoder", decoder_dim, depth, num_heads, "MAE uses a lightweight decoder, e.g. 2-8."
        )
        gh, gw = (int(g) for g in grid)
        self.grid = (gh, gw)
        self.num_patches = gh * gw
        self.embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        if pos_embed == "sincos":
            self.register_buffer(
                "pos_embed", sincos_pos_embed_2d(decoder_dim, self.grid)[None], persistent=False
            )
        elif pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, decoder_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {pos_embed!r}.")
        self.blocks = transformer_blocks(decoder_dim, depth, num_heads, mlp_ratio, init="xavier")
        self.norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.head = nn.Linear(decoder_dim, patch_size * patch_size * in_channels)
        self.embed.apply(xavier_init)
        self.head.apply(xavier_init)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(
        self,
        visible: torch.Tensor,
        restore: torch.Tensor,
        prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the pixels of every patch.

        Args:
            visible: ``[N, K, embed_dim]`` encoder tokens of the visible patches, in the masking's
                shuffled (``keep``) order.
            restore: ``[N, L]`` the masking's restore indices.
            prefix: Optional ``[N, P, embed_dim]`` prefix tokens (e.g. the CLS token).

        Returns:
            ``[N, L, patch_size**2 * in_channels]`` predictions in raster patch order (the
            layout of ``ssl_data.masks.patchify``).

        Raises:
            ValueError: ``restore`` does not have ``L`` columns or ``K > L``.
        """
        n, k, _ = visible.shape
        if restore.shape != (n, self.num_patches) or k > self.num_patches:
            raise ValueError(
                f"MAEDecoder was built for {self.num_patches} patches (grid {self.grid}) but got "
                f"{k} visible tokens and restore of shape {tuple(restore.shape)}; build it with "
                "the grid of the training images."
            )
        x = self.embed(visible)
        masked = self.mask_token.expand(n, self.num_patches - k, -1).to(x.dtype)
        x = torch.cat([x, masked], dim=1)
        x = torch.gather(x, 1, restore[:, :, None].expand(-1, -1, x.shape[2]))
        x = x + self.pos_embed.to(x.dtype)
        n_prefix = 0
        if prefix is not None:
            n_prefix = prefix.shape[1]
            x = torch.cat([self.embed(prefix), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, n_prefix:]))
