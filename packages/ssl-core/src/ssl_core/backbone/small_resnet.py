"""A small ResNet for 28-32 px images on CPU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ssl_core.backbone.small_map_conv import SmallMapConv2d


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut.

    The 3x3 convolutions are :class:`SmallMapConv2d`: ordinary ``nn.Conv2d`` parameters, computed
    as one matmul on 2x2 maps (the last stage at 28-32 px), where that is about 2x faster.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first convolution (and of the shortcut projection).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = SmallMapConv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = SmallMapConv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """A ResNet for 28-32 px inputs: a 3x3 stem, one stage per width, global average pooling.

    The defaults (stem stride 2, widths 32-64-128-256 with one basic block each, 1.23 M
    parameters) were the fastest of the variants measured in the package README (fwd+bwd,
    batch 256, 28x28, 2 CPU cores): a stride-1 stem costs about 3x the time at equal size.

    Args:
        in_channels: Input channels (1 for MNIST-like data, 3 for colour).
        widths: Channels of each stage; every stage after the first halves the resolution.
        blocks: Basic blocks per stage (an int for all stages, or one per stage).
        stem_stride: Stride of the stem convolution (1 keeps full resolution in stage 1).
        pool_size: Side of the adaptive average pool's output grid. 1 (the default) is global
            average pooling, ``widths[-1]`` features; ``k`` keeps a ``k x k`` layout and gives
            ``widths[-1] * k * k`` features (at 28 px the last map is 2x2, so 2 keeps it whole).

    Example:
        >>> net = SmallResNet(in_channels=1)
        >>> net(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 256])
    """

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 64, 128, 256),
        blocks: int | Sequence[int] = 1,
        stem_stride: int = 2,
        pool_size: int = 1,
    ) -> None:
        super().__init__()
        widths = list(widths)
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty list of positive ints, got {widths}.")
        counts = [blocks] * len(widths) if isinstance(blocks, int) else list(blocks)
        if len(counts) != len(widths) or any(c < 1 for c in counts):
            raise ValueError(
                f"blocks must be a positive int or one positive int per stage ({len(widths)}), "
                f"got {blocks}."
            )
        if pool_size < 1:
            raise ValueError(f"pool_size must be a positive int, got {pool_size}.")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        previous = widths[0]
        for i, (width, count) in enumerate(zip(widths, counts, strict=True)):
            layers = [BasicBlock(previous, width, stride=1 if i == 0 else 2)]
            layers += [BasicBlock(width, width) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            previous = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(pool_size), nn.Flatten())
        self.in_channels = in_channels
        self.out_features = widths[-1] * pool_size * pool_size
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``[B, C, H, W]`` images to ``[B, out_features]`` features."""
        return self.pool(self.stages(self.stem(x)))
