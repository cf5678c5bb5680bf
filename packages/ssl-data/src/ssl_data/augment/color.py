"""Batched colour transforms with per-image parameters (torchvision semantics, float images)."""

from collections.abc import Sequence

import torch

from ssl_data.augment._base import BatchTransform, bernoulli, check_probability, uniform

__all__ = [
    "ColorJitter",
    "Normalize",
    "RandomGrayscale",
    "Solarize",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "grayscale",
]

# ITU-R 601-2 luma weights, as in torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)


def check_color_channels(channels: int) -> None:
    """Raise a clear error for colour ops on images that are neither grayscale nor RGB."""
    if channels not in (1, 3):
        raise ValueError(
            f"colour transforms (saturation, hue, grayscale) need 1-channel (grayscale) or "
            f"3-channel (RGB) images, got {channels} channels; drop them from the pipeline or "
            "convert the images."
        )


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """Luma ``[B, 1, H, W]`` of an RGB batch (returns C=1 input unchanged)."""
    if image.shape[1] == 1:
        return image
    check_color_channels(image.shape[1])
    r, g, b = image.unbind(1)
    return (r * _LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)


def _blend_(image: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """In place: ``clamp(ratio * image + (1 - ratio) * other, 0, 1)`` per image."""
    return image.lerp_(other.expand_as(image), 1.0 - ratio.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def adjust_brightness(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Multiply image ``i`` by ``factor[i]`` and clamp to ``[0, 1]`` (in place)."""
    return image.mul_(factor.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)


def adjust_contrast(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend image ``i`` with the mean of its luma by ``factor[i]`` (in place).

    torchvision semantics: the mean is that of the grayscale image (of the image itself for C=1).
    """
    channel_mean = image.mean(dim=(2, 3))
    if image.shape[1] == 3:  # mean of the luma = luma of the channel means
        channel_mean = channel_mean @ torch.tensor(_LUMA, device=image.device)
    # f * x + (1 - f) * mean with per-image scalars: mul_/add_ are faster than a broadcast lerp_
    f = factor.view(-1, 1, 1, 1)
    # channel_mean is [B] (RGB: one luma mean) or [B, C] (one mean per channel otherwise)
    mean = channel_mean.reshape(image.shape[0], -1, 1, 1)
    return image.mul_(f).add_((1.0 - f) * mean).clamp_(0.0, 1.0)


def adjust_saturation(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend image ``i`` with its luma by ``factor[i]`` (in place); a no-op for C=1."""
    if image.shape[1] == 1:
        return image
    return _blend_(image, grayscale(image), factor)


def adjust_hue(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of image ``i`` by ``factor[i]`` turns (``[-0.5, 0.5]``; overwrites image).

    Equal to torchvision's ``adjust_hue`` (RGB -> HSV -> RGB) but computed without building the
    HSV image: with ``M = max``, ``m = min`` and hue ``H`` in sixths, channel ``n`` of the output is
    ``M - (M - m) * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + H) mod 6`` and ``n = 5, 3, 1``
    for R, G, B. A no-op for C=1.
    """
    if image.shape[1] == 1:
        return image
    check_color_channels(image.shape[1])
    r, g, b = image.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    # Where delta == 0 all numerators below are 0 too, so any finite inverse gives hue 0.
    inv = delta.clamp_min(1e-12).reciprocal_()
    # torchvision picks R when max == r, else G when max == g, else B. The selections use lerp
    # with 0/1 float weights: torch.where and remainder are several times slower on CPU.
    hue6 = torch.lerp(
        (r - g).mul_(inv).add_(4.0), (b - r).mul_(inv).add_(2.0), (g == maxc).to(image.dtype)
    )
    hue6 = hue6.lerp_((g - b).mul_(inv), (r == maxc).to(image.dtype))
    # hue6 is in [-1, 5] and the shift in [-3, 3]: adding 6 keeps k positive, so fmod == mod.
    hue6 = hue6.add_(6.0 * factor.view(-1, 1, 1) + 6.0).unsqueeze(1)
    offsets = torch.tensor([5.0, 3.0, 1.0], device=image.device).view(1, 3, 1, 1)
    k = torch.add(hue6, offsets, out=image).fmod_(6.0)  # image is no longer needed
    # clamp(min(k, 4 - k), 0, 1) == clamp(2 - |k - 2|, 0, 1)
    weight = k.sub_(2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
    return weight.mul_(delta.unsqueeze(1)).neg_().add_(maxc.unsqueeze(1)).clamp_(0.0, 1.0)


_ADJUST = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def _factor_range(value: float, name: str, center: float, bound: float) -> tuple[float, float]:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}.")
    low, high = center - value, center + value
    if center == 1.0:
        low = max(low, 0.0)
    if name == "hue" and value > bound:
        raise ValueError(f"hue must lie in [0, 0.5], got {value}.")
    return (low, high)


class ColorJitter(BatchTransform):
    """Random brightness, contrast, saturation and hue, applied with probability ``p``.

    Same parameters as ``torchvision.transforms.v2.ColorJitter`` wrapped in ``RandomApply(p)``:
    factors ``U(max(0, 1 - x), 1 + x)`` for brightness/contrast/saturation, ``U(-hue, hue)`` for
    hue, the four adjustments in an independent uniformly random order for every image. Each
    (step, adjustment) pair runs once on the subset of images that need it, so the cost is about
    one pass of each adjustment over the batch. For C=1 images saturation and hue are no-ops
    (as in torchvision). A strength of 0 disables an adjustment.

    Args:
        brightness: Brightness jitter strength.
        contrast: Contrast jitter strength.
        saturation: Saturation jitter strength.
        hue: Hue jitter strength in ``[0, 0.5]``.
        p: Probability of jittering an image at all.
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        p: float = 1.0,
    ) -> None:
        self.brightness = _factor_range(brightness, "brightness", 1.0, 0.0)
        self.contrast = _factor_range(contrast, "contrast", 1.0, 0.0)
        self.saturation = _factor_range(saturation, "saturation", 1.0, 0.0)
        self.hue = _factor_range(hue, "hue", 0.0, 0.5)
        self.p = check_probability(p)
        self._enabled = tuple(
            r[0] != r[1] for r in (self.brightness, self.contrast, self.saturation, self.hue)
        )

    def sample_params(
        self, n: int, device: torch.device, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw ``apply`` (bool ``[n]``), four factors (``[n]`` each) and ``order`` (``[n, 4]``).

        ``order[i]`` is a uniformly random permutation of ``0..3`` (brightness, contrast,
        saturation, hue).
        """
        params = {"apply": bernoulli(n, self.p, device, generator)}
        for name in ("brightness", "contrast", "saturation", "hue"):
            params[name] = uniform(n, *getattr(self, name), device, generator)
        params["order"] = torch.rand(n, 4, device=device, generator=generator).argsort(dim=1)
        return params

    def transform(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Jitter the batch."""
        n, c = image.shape[:2]
        p = self.sample_params(n, image.device, generator)
        if not any(self._enabled) or self.p == 0.0:
            return image
        factors = (p["brightness"], p["contrast"], p["saturation"], p["hue"])
        enabled = list(self._enabled)
        if c == 1:
            enabled[2] = enabled[3] = False
        for step in range(4):
            slot = p["order"][:, step]
            for op in range(4):
                if not enabled[op]:
                    continue
                idx = torch.nonzero(p["apply"] & (slot == op)).squeeze(1)
                if idx.numel() == 0:
                    continue
                if idx.numel() == n:
                    image = _ADJUST[op](image, factors[op])
                    continue
                sub = _ADJUST[op](image.index_select(0, idx), factors[op].index_select(0, idx))
                image.index_copy_(0, idx, sub)
        return image


class RandomGrayscale(BatchTransform):
    """Replace each RGB image by its luma (kept 3-channel) with probability ``p``.

    A no-op for C=1 images (they are already grayscale).

    Args:
        p: Probability per image.
    """

    def __init__(self, p: float = 0.1) -> None:
        self.p = check_probability(p)

    def sample_params(
        self, n: int, device: torch.device, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw ``apply`` (bool ``[n]``)."""
        return {"apply": bernoulli(n, self.p, device, generator)}

    def transform(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Convert the selected images."""
        mask = self.sample_params(image.shape[0], image.device, generator)["apply"]
        if image.shape[1] == 1:
            return image
        idx = torch.nonzero(mask).squeeze(1)
        if idx.numel() == 0:
            return image
        gray = grayscale(image.index_select(0, idx)).expand(-1, image.shape[1], -1, -1)
        return image.index_copy_(0, idx, gray.contiguous())


class Solarize(BatchTransform):
    """Invert pixels ``>= threshold`` (``x -> 1 - x``) of each image with probability ``p``.

    Args:
        threshold: Threshold in ``[0, 1]`` units (torchvision: 128/255 for uint8, 0.5 for floats).
        p: Probability per image.
    """

    def __init__(self, threshold: float = 0.5, p: float = 0.2) -> None:
        self.threshold = float(threshold)
        self.p = check_probability(p)

    def sample_params(
        self, n: int, device: torch.device, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw ``apply`` (bool ``[n]``)."""
        return {"apply": bernoulli(n, self.p, device, generator)}

    def transform(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Solarize the selected images."""
        mask = self.sample_params(image.shape[0], image.device, generator)["apply"]
        idx = torch.nonzero(mask).squeeze(1)
        if idx.numel() == 0:
            return image
        sub = image.index_select(0, idx)
        # x -> 1 - x where x >= threshold (lerp with a 0/1 weight; torch.where is slow on CPU)
        sub = sub.lerp_(1.0 - sub, (sub >= self.threshold).to(sub.dtype))
        return image.index_copy_(0, idx, sub)


class Normalize(BatchTransform):
    """Subtract ``mean`` and divide by ``std`` per channel (values in ``[0, 1]`` units).

    A single-value ``mean``/``std`` applies to every channel.

    Args:
        mean: Per-channel means.
        std: Per-channel standard deviations (> 0).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean and std need the same non-zero length, got {mean}, {std}.")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0, got {std}.")

    def statistics(
        self, channels: int, device: torch.device | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, 1 / std)``, one value per channel (``[channels]`` each, float32)."""
        if len(self.mean) not in (1, channels):
            raise ValueError(
                f"Normalize has {len(self.mean)} channel statistics but the images have "
                f"{channels} channels; pass mean/std with one value per channel (dataset.mean, "
                "dataset.std)."
            )
        mean = torch.tensor(self.mean, device=device).expand(channels)
        inv_std = (1.0 / torch.tensor(self.std, device=device)).expand(channels)
        return mean, inv_std

    def transform(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Normalise the batch."""
        mean, inv_std = self.statistics(image.shape[1], image.device)
        return image.sub_(mean.view(1, -1, 1, 1)).mul_(inv_std.view(1, -1, 1, 1))
