"""Distributed-correct SSL losses for plain PyTorch.

NT-Xent/InfoNCE, VICReg, Barlow Twins, BYOL and SimSiam losses. They depend on torch only, compute
in float32 for half-precision inputs, and under ``torch.distributed`` use the global batch with the
gradient convention documented in :mod:`ssl_losses.distributed`.
"""

from ssl_losses import distributed
from ssl_losses.barlow_twins import BarlowTwinsLoss
from ssl_losses.byol import BYOLLoss, NegativeCosineSimilarity
from ssl_losses.contrastive import InfoNCELoss, NTXEntLoss
from ssl_losses.vicreg import VICRegLoss

__version__ = "0.1.0"

__all__ = [
    "BYOLLoss",
    "BarlowTwinsLoss",
    "InfoNCELoss",
    "NTXEntLoss",
    "NegativeCosineSimilarity",
    "VICRegLoss",
    "__version__",
    "distributed",
]
