"""The DINO projection head (Caron et al., 2021), also iBOT's."""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class DINOHead(nn.Module):
    """MLP -> L2-normalised bottleneck -> weight-normalised linear layer to ``out_dim`` logits.

    ``n_layers`` Linear layers (GELU between them, optional batch norm) map ``in_features`` to a
    ``bottleneck``-wide vector, which is L2-normalised and fed to a bias-free, weight-normalised
    last layer ``w = g * v / ||v||`` (one ``g`` per output). With ``norm_last_layer=True`` ``g``
    is fixed to 1 (the official default). Linear weights start from a truncated normal with std
    0.02 and zero biases, as the official code.

    The last layer can be frozen for the first ``freeze_last_layer_epochs`` epochs (the paper
    freezes it for the first epoch to stabilise training): pass the current epoch to
    ``forward(x, epoch=e)`` and, while ``e < freeze_last_layer_epochs``, the gradients reaching
    the last layer's parameters are zero. Zero gradients rather than none keep every parameter in
    the graph, so DDP needs no ``find_unused_parameters``; with AdamW a zero gradient leaves the
    layer unchanged apart from weight decay, which with ``norm_last_layer=True`` only rescales
    ``v`` and leaves ``w`` unchanged.

    Args:
        in_features: Input width (the backbone's ``out_features``).
        out_dim: Number of output logits ``K`` (65536 in the paper).
        hidden: Width of the hidden layers.
        bottleneck: Width of the normalised bottleneck.
        n_layers: Linear layers before the bottleneck normalisation (>= 1).
        norm_last_layer: Fix the weight-norm scale ``g`` to 1.
        use_bn: Batch norm after each hidden Linear (the official ResNet-50 setting).
        freeze_last_layer_epochs: Epochs during which the last layer gets zero gradients.

    Attributes:
        out_features: ``out_dim``.
        last_layer: The weight-normalised ``nn.Linear(bottleneck, out_dim, bias=False)``.

    Example:
        >>> head = DINOHead(192, out_dim=1024, hidden=256, bottleneck=64)
        >>> head(torch.randn(4, 192), epoch=0).shape
        torch.Size([4, 1024])
    """

    def __init__(
        self,
        in_features: int,
        out_dim: int = 65536,
        hidden: int = 2048,
        bottleneck: int = 256,
        n_layers: int = 3,
        norm_last_layer: bool = True,
        use_bn: bool = False,
        freeze_last_layer_epochs: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_features", in_features),
            ("out_dim", out_dim),
            ("hidden", hidden),
            ("bottleneck", bottleneck),
            ("n_layers", n_layers),
        ):
            if int(value) < 1:
                raise ValueError(f"DINOHead: {name} must be >= 1, got {value}.")
        if freeze_last_layer_epochs < 0:
            raise ValueError(
                f"freeze_last_layer_epochs must be >= 0, got {freeze_last_layer_epochs}."
            )
        widths = [in_features] + [hidden] * (n_layers - 1) + [bottleneck]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise(widths)):
            layers.append(nn.Linear(a, b))
            if i < n_layers - 1:
                if use_bn:
                    layers.append(nn.BatchNorm1d(b))
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        self.last_layer = weight_norm(nn.Linear(bottleneck, out_dim, bias=False))
        scale = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            scale.fill_(1.0)
        scale.requires_grad_(not norm_last_layer)
        self.in_features = in_features
        self.out_features = out_dim
        self.norm_last_layer = norm_last_layer
        self.freeze_last_layer_epochs = int(freeze_last_layer_epochs)

    def last_layer_frozen(self, epoch: int | None) -> bool:
        """Whether the last layer gets zero gradients at ``epoch``.

        Raises:
            ValueError: The head freezes its last layer but ``epoch`` is ``None`` while gradients
                are being recorded (the freeze cannot be decided).
        """
        if self.freeze_last_layer_epochs == 0:
            return False
        if epoch is None:
            if not torch.is_grad_enabled():
                return False
            raise ValueError(
                f"DINOHead freezes its last layer for the first {self.freeze_last_layer_epochs} "
                "epoch(s), so it needs the current epoch: call head(x, epoch=e) (dino_forward "
                "passes self.current_epoch), or build it with freeze_last_layer_epochs=0."
            )
        return int(epoch) < self.freeze_last_layer_epochs

    def forward(self, x: torch.Tensor, epoch: int | None = None) -> torch.Tensor:
        """Return the ``[B, out_dim]`` logits.

        Args:
            x: ``[B, in_features]`` features.
            epoch: The current training epoch; needed when ``freeze_last_layer_epochs > 0``.
        """
        z = F.normalize(self.mlp(x), dim=-1, p=2)
        weight = self.last_layer.weight
        if weight.requires_grad and self.last_layer_frozen(epoch):
            weight.register_hook(torch.zeros_like)  # zero gradient to g and v while frozen
        return F.linear(z, weight)
