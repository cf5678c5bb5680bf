"""Distributed-correct SSL losses.

Distributed-correct SSL losses (NT-Xent/InfoNCE, VICReg, Barlow Twins, BYOL) for plain PyTorch..
"""

__version__ = "0.1.0"
