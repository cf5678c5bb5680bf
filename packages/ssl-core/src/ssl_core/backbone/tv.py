"""torchvision models as feature extractors."""

from __future__ import annotations

from typing import Any

import torch
import torchvision
from torch import nn

_HEADS = ("fc", "classifier", "heads", "head")


def _first(module: nn.Module, kind: type[nn.Module]) -> tuple[str, nn.Module] | None:
    if isinstance(module, kind):
        return "", module
    for name, child in module.named_modules():
        if isinstance(child, kind):
            return name, child
    return None


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    found = _first(model, nn.Conv2d)
    if found is None:
        raise ValueError("in_channels != 3 needs a model whose first layer is an nn.Conv2d.")
    name, conv = found
    assert isinstance(conv, nn.Conv2d)
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        # Keep pretrained filters meaningful: average over the input channels, spread evenly.
        mean = conv.weight.mean(dim=1, keepdim=True) * (conv.in_channels / in_channels)
        new.weight.copy_(mean.expand(-1, in_channels, -1, -1))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)  # type: ignore[union-attr]
    model.set_submodule(name, new)


def from_torchvision(
    model_name: str,
    low_resolution: bool = False,
    in_channels: int = 3,
    weights: Any = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a torchvision model with its classifier replaced by ``nn.Identity``.

    Args:
        model_name: A name of ``torchvision.models.list_models()``, e.g. ``"resnet18"``.
        low_resolution: Use the CIFAR stem for ResNet-family models: a 3x3 stride-1 first
            convolution and no max-pooling (for 32x32 inputs).
        in_channels: Input channels; the first convolution is rebuilt when it is not 3
            (pretrained filters are averaged over the input channels).
        weights: torchvision weights (``"DEFAULT"``, ``"IMAGENET1K_V1"``, an enum) or ``None``.
        **kwargs: Passed to ``torchvision.models.get_model``.

    Returns:
        The network mapping ``[B, C, H, W]`` to ``[B, out_features]``; ``out_features`` is set
        as an attribute.

    Raises:
        ValueError: Unknown model name (the valid ones are listed), or ``low_resolution`` for a
            model without a ResNet stem.

    Example:
        >>> net = from_torchvision("resnet18", low_resolution=True)
        >>> net.out_features
        512
    """
    valid = torchvision.models.list_models(module=torchvision.models)
    if model_name not in valid:
        raise ValueError(
            f"Unknown torchvision model {model_name!r}. Valid names: {', '.join(valid)}."
        )
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
    model = torchvision.models.get_model(model_name, weights=weights, **kwargs)
    head_name = next((h for h in _HEADS if isinstance(getattr(model, h, None), nn.Module)), None)
    if head_name is None:
        raise ValueError(f"Cannot find the classifier of {model_name!r} (looked for {_HEADS}).")
    linear = _first(getattr(model, head_name), nn.Linear)
    if linear is None:
        raise ValueError(f"The classifier {head_name!r} of {model_name!r} has no nn.Linear.")
    out_features = int(linear[1].in_features)  # type: ignore[union-attr]
    setattr(model, head_name, nn.Identity())
    if low_resolution:
        conv1, maxpool = getattr(model, "conv1", None), getattr(model, "maxpool", None)
        if not isinstance(conv1, nn.Conv2d) or maxpool is None:
            raise ValueError(
                f"low_resolution=True is supported for ResNet-family models (conv1 + maxpool), "
                f"not {model_name!r}; use low_resolution=False or a resnet/resnext/wide_resnet."
            )
        model.conv1 = nn.Conv2d(
            conv1.in_channels, conv1.out_channels, 3, stride=1, padding=1, bias=False
        )
        model.maxpool = nn.Identity()
    if in_channels != 3:
        _adapt_first_conv(model, in_channels)
    model.out_features = out_features
    return model
