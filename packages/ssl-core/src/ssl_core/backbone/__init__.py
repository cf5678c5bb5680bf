"""Backbones: torchvision feature extractors, MLPs and a small CPU-friendly ResNet."""

from ssl_core.backbone.mlp import MLP
from ssl_core.backbone.small_map_conv import SmallMapConv2d
from ssl_core.backbone.small_resnet import BasicBlock, SmallResNet
from ssl_core.backbone.tv import from_torchvision

__all__ = ["MLP", "BasicBlock", "SmallMapConv2d", "SmallResNet", "from_torchvision"]
