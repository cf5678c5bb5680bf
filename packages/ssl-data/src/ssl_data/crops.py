"""Per-sample geometric crops done in DataLoader workers, on uint8 images of any size.

A :class:`CropSpec` is one view's random-resized crop (of the *whole* decoded image) and flip;
its parameters follow ``torchvision.transforms.v2.RandomResizedCrop`` (10 attempts, then the
central crop clamped to the ratio range). Resampling is ``resized_crop(antialias=True)``, so
crops larger than the view are low-pass filtered as torchvision does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["CropSpec", "center_view", "convert_channels", "random_view", "sample_generator"]


@dataclass(frozen=True)
class CropSpec:
    """One view's geometric recipe.

    Attributes:
        size: Output side length in pixels.
        scale: Crop area range as a fraction of the image area.
        ratio: Crop aspect-ratio range (width / height).
        hflip_p: Probability of a horizontal flip.
    """

    size: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    hflip_p: float = 0.5


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of sample ``index`` in ``epoch``: its crops depend on nothing else.

    So the views are the same for any number of workers, ranks or a resumed run.
    """
    mixed = hash((int(seed), int(epoch), int(index))) & 0x7FFF_FFFF_FFFF_FFFF
    return torch.Generator().manual_seed(mixed)


def _crop_box(
    height: int, width: int, spec: CropSpec, g: torch.Generator
) -> tuple[int, int, int, int]:
    area = height * width
    log_lo, log_hi = math.log(spec.ratio[0]), math.log(spec.ratio[1])
    draws = torch.rand(10, 2, generator=g).tolist()
    for u_area, u_ratio in draws:
        target = area * (spec.scale[0] + u_area * (spec.scale[1] - spec.scale[0]))
        aspect = math.exp(log_lo + u_ratio * (log_hi - log_lo))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=g))
            left = int(torch.randint(0, width - w + 1, (1,), generator=g))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < spec.ratio[0]:
        w, h = width, round(width / spec.ratio[0])
    elif in_ratio > spec.ratio[1]:
        w, h = round(height * spec.ratio[1]), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_view(image: torch.Tensor, spec: CropSpec, g: torch.Generator) -> torch.Tensor:
    """Random-resized crop (and flip) of a uint8 ``[C, H, W]`` image to ``[C, size, size]``."""
    from torchvision.transforms.v2 import functional as tvf

    top, left, h, w = _crop_box(image.shape[-2], image.shape[-1], spec, g)
    view = tvf.resized_crop(image, top, left, h, w, [spec.size, spec.size], antialias=True)
    if spec.hflip_p > 0 and float(torch.rand(1, generator=g)) < spec.hflip_p:
        view = view.flip(-1)
    return view


def center_view(image: torch.Tensor, size: int) -> torch.Tensor:
    """Evaluation view: resize the shorter side to ``size`` (antialiased), centre-crop square."""
    from torchvision.transforms.v2 import functional as tvf

    if tuple(image.shape[-2:]) != (size, size):
        image = tvf.resize(image, [size], antialias=True)
        image = tvf.center_crop(image, [size, size])
    return image


def convert_channels(image: torch.Tensor, channels: int) -> tuple[torch.Tensor, bool]:
    """Return ``image`` with ``channels`` (1 or 3) channels (alpha dropped) and a flag.

    The flag says whether a gray <-> RGB conversion happened (alpha removal alone does not count).
    """
    if image.shape[0] in (2, 4):
        image = image[:-1]
    have = image.shape[0]
    if have == channels:
        return image, False
    if channels == 3:
        return image.expand(3, -1, -1).contiguous(), True
    weights = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
    gray = (image.to(torch.float32) * weights).sum(0, keepdim=True).round_().clamp_(0, 255)
    return gray.to(torch.uint8), True
