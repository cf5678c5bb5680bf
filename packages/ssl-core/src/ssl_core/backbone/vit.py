"""Vision Transformers from timm (optional extra ``ssl-core[timm]``) with token access.

:func:`from_timm` builds a timm ``VisionTransformer`` without its classifier and wraps it in
:class:`ViTBackbone`, whose ``forward`` gives the pooled embedding (the CLS token) and whose
:meth:`ViTBackbone.forward_tokens` gives the CLS and patch tokens, optionally running only some
patches (``keep``, MAE / I-JEPA context) or replacing some by a mask token (``mask``, iBOT).
Position embeddings are interpolated for any input size divisible by the patch size (timm's
``dynamic_img_size``), so multi-crop local views of another size go through the same network.
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from ssl_core.backbone.attention import AttentionKernel

_INSTALL_HINT = (
    "ssl_core.backbone.from_timm needs timm, an optional dependency of ssl-core: install it "
    "with `pip install 'ssl-core[timm]'` (or `uv add timm`)."
)


def _import_timm() -> Any:
    try:
        import timm
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return timm


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


class ViTBackbone(nn.Module):
    """A timm Vision Transformer as an SSL backbone: pooled embedding or tokens.

    Build it with :func:`from_timm`. ``forward(x)`` returns the model's pooled features
    ``[B, D]``: the CLS token for ViTs with one (``global_pool="token"``), the mean of the patch
    tokens for models without a class token.

    Args:
        model: A timm ``VisionTransformer`` built with ``num_classes=0`` and
            ``dynamic_img_size=True``.
        attention: Attention kernel: ``"auto"`` (torch's fused kernel on accelerators, timm's
            explicit one on CPUs, where it is faster for small images), ``"fused"`` or
            ``"math"``; see :class:`~ssl_core.backbone.attention.AttentionKernel`.

    Attributes:
        model: The wrapped timm model.
        out_features: Width ``D`` of the embedding (``embed_dim``).
        embed_dim: Token width ``D``.
        patch_size: Side of a square patch in pixels.
        num_prefix_tokens: Tokens before the patch tokens (CLS and register tokens).
        mask_token: Learnable ``[1, 1, D]`` token that replaces masked patches (zero-initialised,
            as iBOT's).

    Example:
        >>> net = from_timm("vit_tiny_patch16_224", img_size=28, patch_size=4, in_channels=1)
        >>> net(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 192])
        >>> net.forward_tokens(torch.randn(2, 1, 16, 16))["patches"].shape
        torch.Size([2, 16, 192])
    """

    def __init__(self, model: nn.Module, attention: str = "auto") -> None:
        super().__init__()
        self.attention = AttentionKernel(attention)
        for name in ("patch_embed", "blocks", "norm", "_pos_embed", "forward_head"):
            if not hasattr(model, name):
                raise TypeError(
                    f"ViTBackbone wraps a timm VisionTransformer (it needs model.{name}), got "
                    f"{type(model).__name__}; build it with ssl_core.backbone.from_timm('vit_...')."
                )
        if not getattr(model, "dynamic_img_size", False):
            raise ValueError(
                "ViTBackbone needs a timm model built with dynamic_img_size=True (position "
                "embeddings interpolated for other input sizes); from_timm sets it."
            )
        ph, pw = _pair(model.patch_embed.patch_size)
        if ph != pw:
            raise ValueError(f"ViTBackbone supports square patches, got {ph}x{pw}.")
        self.model = model
        self.embed_dim = int(model.embed_dim)
        self.out_features = self.embed_dim
        self.patch_size = ph
        self.num_prefix_tokens = int(model.num_prefix_tokens)
        self.has_class_token = getattr(model, "cls_token", None) is not None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))

    def patch_grid(self, h: int, w: int) -> tuple[int, int]:
        """Return the patch grid ``(h // patch_size, w // patch_size)`` of an ``h x w`` input.

        Raises:
            ValueError: ``h`` or ``w`` is not a positive multiple of the patch size.
        """
        p = self.patch_size
        if h < p or w < p or h % p or w % p:
            raise ValueError(
                f"The ViT's patch size is {p}, so image sides must be positive multiples of {p}; "
                f"got {h}x{w}. Resize or crop to a multiple of {p} (e.g. "
                f"{max(p, h // p * p)}x{max(p, w // p * p)}), or build the ViT with another "
                "patch_size."
            )
        return h // p, w // p

    def _check_input(self, x: torch.Tensor) -> tuple[int, int]:
        if x.ndim != 4:
            raise ValueError(
                f"ViTBackbone expects images [B, C, H, W], got shape {tuple(x.shape)}."
            )
        return self.patch_grid(int(x.shape[-2]), int(x.shape[-1]))

    def _embed(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        gh, gw = self._check_input(x)
        tokens = self.model.patch_embed(x)  # [B, gh, gw, D]: dynamic_img_size keeps the grid
        batch = tokens.shape[0]
        if mask is not None:
            if mask.dtype != torch.bool or tuple(mask.shape) != (batch, gh * gw):
                raise ValueError(
                    f"mask must be a BoolTensor [B, L] = [{batch}, {gh * gw}] (True = replace the "
                    f"patch by the mask token), got {mask.dtype} {tuple(mask.shape)}."
                )
            flat = tokens.reshape(batch, gh * gw, -1)
            flat = torch.where(mask.unsqueeze(-1), self.mask_token.to(flat.dtype), flat)
            tokens = flat.view_as(tokens)
        elif torch.is_grad_enabled() and self.mask_token.requires_grad:
            # DDP needs every trainable parameter in the graph: the unused mask token gets zeros.
            tokens = tokens + 0.0 * self.mask_token.sum()
        return self.model._pos_embed(tokens)  # adds the interpolated pos-embed, prepends CLS

    def _keep(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        prefix, patches = tokens[:, : self.num_prefix_tokens], tokens[:, self.num_prefix_tokens :]
        if keep.dtype not in (torch.int32, torch.int64) or keep.ndim != 2:
            raise ValueError(
                f"keep must be an integer tensor [B, K] of patch indices, got {keep.dtype} "
                f"{tuple(keep.shape)}."
            )
        if keep.shape[0] != patches.shape[0] or keep.shape[1] > patches.shape[1]:
            raise ValueError(
                f"keep has shape {tuple(keep.shape)} but the batch has {patches.shape[0]} images "
                f"of {patches.shape[1]} patches; pass [B, K] indices with K <= {patches.shape[1]}."
            )
        index = keep.long().unsqueeze(-1).expand(-1, -1, patches.shape[-1])
        return torch.cat([prefix, torch.gather(patches, 1, index)], dim=1)

    def _encode(
        self, x: torch.Tensor, keep: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        self.attention.apply(self.model, x.device.type)
        tokens = self._embed(x, mask)
        if keep is not None:
            tokens = self._keep(tokens, keep)
        tokens = self.model.patch_drop(tokens)
        tokens = self.model.norm_pre(tokens)
        tokens = self.model.blocks(tokens)
        return self.model.norm(tokens)

    def forward_tokens(
        self,
        x: torch.Tensor,
        *,
        keep: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """Run the transformer and return its tokens after the final norm.

        Args:
            x: Images ``[B, C, H, W]`` with ``H`` and ``W`` multiples of ``patch_size``.
            keep: Optional ``[B, K]`` indices (row-major over the patch grid) of the patches to
                run, selected after the position embedding is added; the others are dropped.
            mask: Optional ``[B, L]`` booleans; ``True`` patches are replaced by
                :attr:`mask_token` before the position embedding.

        Returns:
            ``{"cls": [B, D] or None (no class token), "patches": [B, L or K, D]}``.

        Raises:
            ValueError: A side is not a multiple of the patch size, or ``keep``/``mask`` have the
                wrong shape or dtype.
        """
        tokens = self._encode(x, keep, mask)
        cls = tokens[:, 0] if self.has_class_token else None
        return {"cls": cls, "patches": tokens[:, self.num_prefix_tokens :]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pooled embedding ``[B, D]`` (the CLS token for standard ViTs)."""
        return self.model.forward_head(self._encode(x, None, None), pre_logits=True)


def from_timm(
    model_name: str,
    *,
    img_size: int | None = None,
    patch_size: int | None = None,
    in_channels: int = 3,
    pretrained: bool = False,
    attention: str = "auto",
    **timm_kwargs: Any,
) -> ViTBackbone:
    """Build a timm Vision Transformer as a :class:`ViTBackbone` (no classifier).

    Args:
        model_name: A timm ViT name, e.g. ``"vit_tiny_patch16_224"``, ``"vit_small_patch16_224"``.
        img_size: Training image side (sets the position-embedding grid); timm's default if
            ``None``. Other sizes still work through interpolation.
        patch_size: Patch side, overriding the name's (``4`` for 28-32 px images).
        in_channels: Input channels (``1`` for grayscale).
        pretrained: Load timm's pretrained weights (needs network access to the weights hub).
        attention: Attention kernel, ``"auto"``, ``"fused"`` or ``"math"`` (see
            :class:`ViTBackbone`).
        **timm_kwargs: Passed to ``timm.create_model`` (``drop_path_rate``, ``depth``,
            ``embed_dim``...).

    Returns:
        The backbone; ``out_features`` is the embedding width.

    Raises:
        ImportError: timm is not installed (install ``ssl-core[timm]``).
        ValueError: Unknown model name (close names are suggested), a non-ViT model, or
            ``dynamic_img_size=False``.

    Example:
        >>> net = from_timm("vit_small_patch16_224", img_size=32, patch_size=4)
        >>> net.out_features, net.patch_grid(32, 32)
        (384, (8, 8))
    """
    timm = _import_timm()
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models("vit_*"), n=5)
        raise ValueError(
            f"Unknown timm model {model_name!r}. Close names: {', '.join(close) or 'none'}; "
            "list them with timm.list_models('vit_*')."
        )
    if timm_kwargs.pop("dynamic_img_size", True) is not True:
        raise ValueError(
            "from_timm always builds with dynamic_img_size=True (local crops of another size "
            "need interpolated position embeddings); drop the dynamic_img_size argument."
        )
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
    for name in ("num_classes", "in_chans"):
        if name in timm_kwargs:
            raise ValueError(
                f"from_timm sets {name} itself (no classifier; in_channels); drop {name}."
            )
    kwargs: dict[str, Any] = dict(timm_kwargs)
    if img_size is not None:
        kwargs["img_size"] = img_size
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    not_a_vit = ValueError(
        f"{model_name!r} is not a timm VisionTransformer; from_timm builds ViTs (vit_*, deit_*). "
        "Use ssl_core.backbone.from_torchvision or SmallResNet for CNNs."
    )
    try:
        model = timm.create_model(
            model_name,
            pretrained=pretrained,
            num_classes=0,
            in_chans=in_channels,
            dynamic_img_size=True,
            **kwargs,
        )
    except TypeError as err:
        if "dynamic_img_size" in str(err):
            raise not_a_vit from err
        raise
    if not hasattr(model, "_pos_embed"):
        raise not_a_vit
    backbone = ViTBackbone(model, attention)
    if img_size is not None:
        backbone.patch_grid(*_pair(img_size))  # a training size the patches do not tile: fail now
    return backbone
