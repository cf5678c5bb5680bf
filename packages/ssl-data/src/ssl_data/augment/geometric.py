"""Batched geometric transforms: random resized crop, horizontal flip, resize."""

import math

import torch
import torch.nn.functional as F

from ssl_data.augment._base import BatchTransform, bernoulli, check_probability, uniform

__all__ = ["HorizontalFlip", "RandomResizedCrop", "Resize", "crop_axes", "crop_resize"]


def _pair(size: int | tuple[int, int], name: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"{name} must be a positive int or a pair (height, width), got {size!r}.")
    return (int(size[0]), int(size[1]))


class RandomResizedCrop(BatchTransform):
    """Crop a random region of each image and resize it to ``size`` (independently per image).

    The crop parameters follow ``torchvision.transforms.v2.RandomResizedCrop`` exactly: up to 10
    attempts of area fraction ``U(scale)`` and aspect ratio ``exp(U(log ratio))``, with rounded
    integer width/height and a uniformly placed integer offset; if no attempt fits, the central
    crop clamped to ``ratio``. All attempts are drawn at once for the whole batch.

    Resampling is bilinear (half-pixel centres, like torchvision's resize) through one batched
    ``F.grid_sample``; a horizontal flip can be folded into the same sampling grid at no cost
    (``hflip_p``). ``grid_sample`` measured faster than ``torchvision.ops.roi_align`` on CPU (about
    1.5-1.8x at 32 and 96 px). Unlike torchvision's ``antialias=True`` there is no low-pass filter
    when a crop is *larger* than ``size``; with in-memory datasets stored at training resolution
    crops are almost always upsampled, where both agree.

    Args:
        size: Output ``(height, width)`` or an int for a square.
        scale: Range of the crop area as a fraction of the image area.
        ratio: Range of the crop aspect ratio (width / height).
        hflip_p: Probability of also flipping each crop horizontally.
    """

    def __init__(
        self,
        size: int | tuple[int, int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        hflip_p: float = 0.0,
    ) -> None:
        self.size = _pair(size)
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"scale must satisfy 0 < scale[0] <= scale[1] <= 1, got {scale}.")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < ratio[0] <= ratio[1], got {ratio}.")
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.hflip_p = check_probability(hflip_p, "hflip_p")

    def sample_params(
        self,
        n: int,
        height: int,
        width: int,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Draw crop boxes for ``n`` images of size ``height x width``.

        Returns:
            ``top``, ``left``, ``height``, ``width`` (float tensors of integer values, ``[n]``)
            and ``flip`` (bool ``[n]``).
        """
        attempts = 10
        area = float(height * width)
        target = area * uniform(n * attempts, *self.scale, device, generator)
        log_ratio = uniform(
            n * attempts, math.log(self.ratio[0]), math.log(self.ratio[1]), device, generator
        )
        aspect = torch.exp(log_ratio)
        w = torch.round(torch.sqrt(target * aspect)).view(n, attempts)
        h = torch.round(torch.sqrt(target / aspect)).view(n, attempts)
        ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = ok.to(torch.uint8).argmax(dim=1, keepdim=True)
        found = ok.any(dim=1)
        w = w.gather(1, first).squeeze(1)
        h = h.gather(1, first).squeeze(1)
        u = torch.rand(2, n, device=device, generator=generator)
        top = torch.floor(u[0] * (height - h + 1))
        left = torch.floor(u[1] * (width - w + 1))
        # torchvision's fallback: a central crop clamped to the ratio range.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            fw, fh = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            fw, fh = round(height * self.ratio[1]), height
        else:
            fw, fh = width, height
        top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
        left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
        h = torch.where(found, h, torch.full_like(h, fh))
        w = torch.where(found, w, torch.full_like(w, fw))
        flip = bernoulli(n, self.hflip_p, device, generator)
        return {"top": top, "left": left, "height": h, "width": w, "flip": flip}

    def transform(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Crop and resize every image with its own box."""
        n, _, height, width = image.shape
        p = self.sample_params(n, height, width, image.device, generator)
        return crop_resize(
            image, p["top"], p["left"], p["height"], p["width"], self.size, p["flip"]
        )


def crop_resize(
    image: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    height: torch.Tensor,
    width: torch.Tensor,
    size: tuple[int, int],
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bilinearly resample box ``[top, top+height) x [left, left+width)`` of each image to ``size``.

    Args:
        image: ``[B, C, H, W]`` float image.
        top: ``[B]`` box top rows (pixels).
        left: ``[B]`` box left columns (pixels).
        height: ``[B]`` box heights (pixels).
        width: ``[B]`` box widths (pixels).
        size: Output ``(height, width)``.
        flip: Optional ``[B]`` bool; mirrors the selected crops horizontally.

    Returns:
        ``[B, C, size[0], size[1]]`` float tensor.
    """
    n, _, in_h, in_w = image.shape
    out_h, out_w = size
    gx, gy = crop_axes(top, left, height, width, (in_h, in_w), size, flip, image.dtype)
    grid = torch.stack(
        (
            gx.view(n, 1, out_w).expand(n, out_h, out_w),
            gy.view(n, out_h, 1).expand(n, out_h, out_w),
        ),
        dim=-1,
    )
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_axes(
    top: torch.Tensor,
    left: torch.Tensor,
    height: torch.Tensor,
    width: torch.Tensor,
    in_size: tuple[int, int],
    size: tuple[int, int],
    flip: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised sampling coordinates ``([B, out_w] x, [B, out_h] y)`` of crop boxes.

    ``F.grid_sample`` coordinates (``-1`` and ``1`` are the outer pixel edges) of the output
    pixel centres; the grid of an axis-aligned crop is separable (x depends on the column only,
    y on the row only).
    """
    in_h, in_w = in_size
    out_h, out_w = size
    sx = width / in_w
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    xo = (torch.arange(out_w, device=top.device, dtype=dtype) * 2 + 1) / out_w - 1
    yo = (torch.arange(out_h, device=top.device, dtype=dtype) * 2 + 1) / out_h - 1
    gx = sx.view(-1, 1) * xo + ((2 * left + width) / in_w - 1).view(-1, 1)
    gy = (height / in_h).view(-1, 1) * yo + ((2 * top + height) / in_h - 1).view(-1, 1)
    return gx.to(dtype), gy.to(dtype)


class HorizontalFlip(BatchTransform):
    """Mirror each image horizontally with probability ``p`` (independently per image).

    Args:
        p: Flip probability.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = check_probability(p)

    def sample_params(
        self, n: int, device: torch.device, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw ``flip`` (bool ``[n]``)."""
        return {"flip": bernoulli(n, self.p, device, generator)}

    def transform(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Flip the selected images."""
        flip = self.sample_params(image.shape[0], image.device, generator)["flip"]
        idx = torch.nonzero(flip).squeeze(1)
        return image.index_copy_(0, idx, image.index_select(0, idx).flip(-1))


class Resize(BatchTransform):
    """Resize every image to ``size`` (bilinear, antialiased; a no-op when already that size).

    Args:
        size: Output ``(height, width)`` or an int for a square.
    """

    def __init__(self, size: int | tuple[int, int]) -> None:
        self.size = _pair(size)

    def transform(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Resize the batch."""
        if tuple(image.shape[-2:]) == self.size:
            return image
        return F.interpolate(
            image, size=self.size, mode="bilinear", align_corners=False, antialias=True
        ).clamp_(0.0, 1.0)
