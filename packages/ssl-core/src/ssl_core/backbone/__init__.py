"""Backbones: torchvision feature extractors, MLPs and a small CPU-friendly ResNet."""

from ssl_core.backbone.ijepa_predictor import IJEPAPredictor
from ssl_core.backbone.mae_decoder import MAEDecoder
from ssl_core.backbone.mlp import MLP
from ssl_core.backbone.pos_embed import sincos_pos_embed_2d
from ssl_core.backbone.small_map_conv import SmallMapConv2d
from ssl_core.backbone.small_resnet import BasicBlock, SmallResNet
from ssl_core.backbone.tv import from_torchvision

__all__ = [
    "MLP",
    "BasicBlock",
    "IJEPAPredictor",
    "MAEDecoder",
    "SmallMapConv2d",
    "SmallResNet",
    "from_torchvision",
    "sincos_pos_embed_2d",
]
