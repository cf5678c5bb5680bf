"""Ready SSL forward functions (SimCLR, NNCLR, BYOL, VICReg, Barlow Twins, supervised)."""

__version__ = "0.1.0"
