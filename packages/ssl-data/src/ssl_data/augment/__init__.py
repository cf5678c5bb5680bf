"""Batched augmentation: every op is a callable ``batch -> batch`` with per-image randomness.

Ops accept uint8 (0..255) or float (``[0, 1]``) ``[B, C, H, W]`` images on any device, work in
float32 and draw their parameters on the image's device from the generator passed by
:class:`MultiViewAugment` (or the device's global RNG when called alone).
"""

from ssl_data.augment._base import BatchTransform, Compose, to_float
from ssl_data.augment.blur import GaussianBlur, gaussian_blur
from ssl_data.augment.color import (
    ColorJitter,
    Normalize,
    RandomGrayscale,
    Solarize,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
)
from ssl_data.augment.geometric import HorizontalFlip, RandomResizedCrop, Resize, crop_resize
from ssl_data.augment.multiview import MultiViewAugment, repeat_rows

__all__ = [
    "BatchTransform",
    "ColorJitter",
    "Compose",
    "GaussianBlur",
    "HorizontalFlip",
    "MultiViewAugment",
    "Normalize",
    "RandomGrayscale",
    "RandomResizedCrop",
    "Resize",
    "Solarize",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "crop_resize",
    "gaussian_blur",
    "repeat_rows",
    "to_float",
]
