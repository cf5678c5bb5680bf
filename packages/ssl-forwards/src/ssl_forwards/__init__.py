"""Ready SSL forward functions.

SimCLR, NNCLR, BYOL, VICReg, Barlow Twins, DINO, MoCo v3, SwAV, SimSiam, MAE, I-JEPA, iBOT and
supervised.

Each forward is a plain function ``f(self, batch, stage) -> dict`` that ``ssl_core.Module`` binds;
see each function's docstring for the module attributes it reads.

Example:
    >>> import ssl_forwards
    >>> ssl_forwards.simclr_forward.__name__
    'simclr_forward'
"""

from ssl_forwards.barlow_twins import barlow_twins_forward
from ssl_forwards.byol import byol_forward
from ssl_forwards.dino import dino_forward
from ssl_forwards.ibot import ibot_forward
from ssl_forwards.ijepa import ijepa_forward
from ssl_forwards.mae import mae_forward
from ssl_forwards.mocov3 import mocov3_forward
from ssl_forwards.nnclr import SUPPORT_SET_KEY, nearest_neighbours, nnclr_forward
from ssl_forwards.simclr import simclr_forward
from ssl_forwards.simsiam import simsiam_forward
from ssl_forwards.supervised import supervised_forward
from ssl_forwards.swav import SWAV_QUEUE_KEY, swav_forward
from ssl_forwards.vicreg import vicreg_forward

__version__ = "0.1.0"

__all__ = [
    "SUPPORT_SET_KEY",
    "SWAV_QUEUE_KEY",
    "barlow_twins_forward",
    "byol_forward",
    "dino_forward",
    "ibot_forward",
    "ijepa_forward",
    "mae_forward",
    "mocov3_forward",
    "nearest_neighbours",
    "nnclr_forward",
    "simclr_forward",
    "simsiam_forward",
    "supervised_forward",
    "swav_forward",
    "vicreg_forward",
]
