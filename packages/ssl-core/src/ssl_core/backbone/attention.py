"""Which attention kernel a timm ViT runs: fused ``scaled_dot_product_attention`` or explicit."""

from __future__ import annotations

from torch import nn

ATTENTION_KERNELS = ("auto", "fused", "math")

__all__ = ["ATTENTION_KERNELS", "AttentionKernel"]


class AttentionKernel:
    """Sets ``fused_attn`` on every timm attention layer of a model, per device.

    ``"auto"`` runs the fused kernel on accelerators and the explicit one on CPUs, where torch's
    fused CPU kernel is the slower of the two for the short token sequences of small images
    (docs/tuning.md); ``"fused"`` and ``"math"`` fix the kernel. Both compute the same attention.

    Args:
        kernel: ``"auto"``, ``"fused"`` or ``"math"``.

    Raises:
        ValueError: An unknown kernel name.
    """

    def __init__(self, kernel: str = "auto") -> None:
        if kernel not in ATTENTION_KERNELS:
            raise ValueError(
                f"attention must be one of {', '.join(ATTENTION_KERNELS)}, got {kernel!r}."
            )
        self.kernel = kernel
        self._device_type: str | None = None

    def apply(self, model: nn.Module, device_type: str) -> None:
        """Select the kernel of ``model``'s attention layers for inputs on ``device_type``."""
        if device_type == self._device_type:
            return
        fused = self.kernel == "fused" or (self.kernel == "auto" and device_type != "cpu")
        for module in model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = fused
        self._device_type = device_type
