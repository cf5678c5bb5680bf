"""Distributed-correct SSL losses for plain PyTorch.

Joint-embedding losses (NT-Xent/InfoNCE, VICReg, Barlow Twins, BYOL, SimSiam, MoCo v3),
self-distillation and clustering losses (DINO, iBOT's patch loss, SwAV with Sinkhorn-Knopp) and
masked/predictive losses (MAE, I-JEPA). They depend on torch only, compute in float32 for
half-precision inputs, and under ``torch.distributed`` use the global batch with the gradient
convention documented in :mod:`ssl_losses.distributed`.
"""

from ssl_losses import distributed
from ssl_losses.barlow_twins import BarlowTwinsLoss
from ssl_losses.byol import BYOLLoss, NegativeCosineSimilarity
from ssl_losses.contrastive import InfoNCELoss, NTXEntLoss
from ssl_losses.dino import DINOLoss
from ssl_losses.ibot import iBOTPatchLoss
from ssl_losses.masked import IJEPALoss, MAELoss
from ssl_losses.mocov3 import MoCoV3Loss
from ssl_losses.swav import SwAVLoss, sinkhorn_knopp
from ssl_losses.vicreg import VICRegLoss

__version__ = "0.1.0"

__all__ = [
    "BYOLLoss",
    "BarlowTwinsLoss",
    "DINOLoss",
    "IJEPALoss",
    "InfoNCELoss",
    "MAELoss",
    "MoCoV3Loss",
    "NTXEntLoss",
    "NegativeCosineSimilarity",
    "SwAVLoss",
    "VICRegLoss",
    "__version__",
    "distributed",
    "iBOTPatchLoss",
    "sinkhorn_knopp",
]
