"""Batched Gaussian blur with a random sigma per image."""

import torch
import torch.nn.functional as F

from ssl_data.augment._base import BatchTransform, bernoulli, check_probability, uniform

__all__ = ["GaussianBlur", "gaussian_blur", "gaussian_kernels"]


def gaussian_kernels(kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """Normalised 1-D Gaussian kernels ``[n, kernel_size]``, one per sigma (as torchvision)."""
    half = (kernel_size - 1) * 0.5
    x = torch.linspace(-half, half, kernel_size, device=sigma.device)
    pdf = torch.exp(-0.5 * (x.view(1, -1) / sigma.view(-1, 1)).square())
    return pdf / pdf.sum(dim=1, keepdim=True)


def gaussian_blur(image: torch.Tensor, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """Blur image ``i`` with an isotropic Gaussian of standard deviation ``sigma[i]``.

    Separable filter with reflect padding, as torchvision's ``gaussian_blur``.

    Args:
        image: ``[B, C, H, W]`` float images.
        kernel_size: Odd kernel size.
        sigma: ``[B]`` standard deviations (pixels).

    Returns:
        The blurred ``[B, C, H, W]`` images.
    """
    n, _, h, w = image.shape
    if n == 0:
        return image
    # Separable filter as kernel_size shifted multiply-adds with per-image weights: measured
    # 2-4x faster on CPU than a grouped conv2d with one group per (image, channel).
    kernel = gaussian_kernels(kernel_size, sigma).to(image.dtype)
    pad = kernel_size // 2
    x = F.pad(image, (pad, pad, pad, pad), mode="reflect")
    kx = kernel.view(n, 1, 1, kernel_size)
    rows = x[..., 0:w] * kx[..., 0:1]
    for t in range(1, kernel_size):
        rows.addcmul_(x[..., t : t + w], kx[..., t : t + 1])
    ky = kernel.view(n, 1, kernel_size, 1)
    out = rows[..., 0:h, :] * ky[..., 0:1, :]
    for t in range(1, kernel_size):
        out.addcmul_(rows[..., t : t + h, :], ky[..., t : t + 1, :])
    return out


class GaussianBlur(BatchTransform):
    """Gaussian blur with ``sigma ~ U(sigma_range)`` per image, applied with probability ``p``.

    Matches ``RandomApply([torchvision.transforms.v2.GaussianBlur(kernel_size, sigma)], p)``.
    Only the selected images are convolved.

    Args:
        kernel_size: Odd kernel size (SimCLR uses about 10% of the image size).
        sigma: ``(min, max)`` range of the standard deviation in pixels.
        p: Probability per image.
    """

    def __init__(
        self, kernel_size: int, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5
    ) -> None:
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}.")
        if not 0.0 < sigma[0] <= sigma[1]:
            raise ValueError(f"sigma must satisfy 0 < sigma[0] <= sigma[1], got {sigma}.")
        self.kernel_size = int(kernel_size)
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.p = check_probability(p)

    def sample_params(
        self, n: int, device: torch.device, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Draw ``apply`` (bool ``[n]``) and ``sigma`` (``[n]``)."""
        return {
            "apply": bernoulli(n, self.p, device, generator),
            "sigma": uniform(n, *self.sigma, device, generator),
        }

    def check_image_size(self, size: tuple[int, int]) -> None:
        """Raise a clear error when the kernel does not fit ``(height, width)`` images."""
        if self.kernel_size // 2 >= min(size):
            raise ValueError(
                f"GaussianBlur kernel_size={self.kernel_size} is too large for "
                f"{tuple(size)} images; use an odd kernel below the image size."
            )

    def transform(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Blur the selected images."""
        p = self.sample_params(image.shape[0], image.device, generator)
        self.check_image_size(tuple(image.shape[-2:]))
        idx = torch.nonzero(p["apply"]).squeeze(1)
        if idx.numel() == 0:
            return image
        if idx.numel() == image.shape[0]:
            return gaussian_blur(image, self.kernel_size, p["sigma"])
        blurred = gaussian_blur(
            image.index_select(0, idx), self.kernel_size, p["sigma"].index_select(0, idx)
        )
        return image.index_copy_(0, idx, blurred)
