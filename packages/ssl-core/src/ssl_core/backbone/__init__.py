"""Backbones: torchvision feature extractors, timm ViTs, MLPs, heads and a small CPU ResNet."""

from ssl_core.backbone.heads import DINOHead
from ssl_core.backbone.mlp import MLP
from ssl_core.backbone.small_map_conv import SmallMapConv2d
from ssl_core.backbone.small_resnet import BasicBlock, SmallResNet
from ssl_core.backbone.tv import from_torchvision
from ssl_core.backbone.vit import ViTBackbone, from_timm

__all__ = [
    "MLP",
    "BasicBlock",
    "DINOHead",
    "SmallMapConv2d",
    "SmallResNet",
    "ViTBackbone",
    "from_timm",
    "from_torchvision",
]
