"""Backbones: torchvision feature extractors, timm ViTs, MLPs, heads and a small CPU ResNet."""

from ssl_core.backbone.heads import DINOHead
from ssl_core.backbone.ijepa_predictor import IJEPAPredictor
from ssl_core.backbone.mae_decoder import MAEDecoder
from ssl_core.backbone.mlp import MLP
from ssl_core.backbone.pos_embed import sincos_pos_embed_2d
from ssl_core.backbone.small_map_conv import SmallMapConv2d
from ssl_core.backbone.small_resnet import BasicBlock, SmallResNet
from ssl_core.backbone.tv import from_torchvision
from ssl_core.backbone.vit import ViTBackbone, from_timm

__all__ = [
    "MLP",
    "BasicBlock",
    "DINOHead",
    "IJEPAPredictor",
    "MAEDecoder",
    "SmallMapConv2d",
    "SmallResNet",
    "ViTBackbone",
    "from_timm",
    "from_torchvision",
    "sincos_pos_embed_2d",
]
