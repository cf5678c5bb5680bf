"""A 2-d convolution that runs as one dense matrix product on tiny feature maps.

The last stage of a ResNet on 28-32 px images works on 2x2 maps. There a 3x3 convolution with
padding 1 sees the whole input from every output pixel, so it is exactly a dense linear map from
the ``H*W*C_in`` input values to the ``H_out*W_out*C_out`` outputs. Written as that matrix
product it runs at matmul speed; oneDNN's convolution backward on such maps is several times
slower than its forward. The weight matrix is rebuilt from the kernel each call, so the parameter
stays an ordinary ``nn.Conv2d`` weight: as the product of a constant 0/1 tap-selection matrix with
the kernel, whose backward is one more small matmul (a gather by index has a slower backward).
On 4x4 maps the dense form loses to the convolution, hence ``max_input_pixels=4``; the timings
are in docs/tuning.md (``benchmarks/small_map_conv.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SmallMapConv2d", "tap_index"]


def tap_index(
    height: int,
    width: int,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> torch.Tensor:
    """Which kernel tap links each output pixel to each input pixel.

    Args:
        height: Input height.
        width: Input width.
        kernel: Kernel ``(kh, kw)``.
        stride: Stride ``(sh, sw)``.
        padding: Zero padding ``(ph, pw)``.

    Returns:
        ``[H_out, W_out, H*W]`` long tensor: the tap (``i*kw + j``) through which each output
        pixel sees each input pixel, or ``kh*kw`` (one past the last tap) where it does not.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    out_h = (height + 2 * ph - kh) // sh + 1
    out_w = (width + 2 * pw - kw) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(
            f"a {kh}x{kw} kernel (stride {stride}, padding {padding}) does not fit a "
            f"{height}x{width} input."
        )
    oi = torch.arange(out_h).view(-1, 1, 1, 1)
    oj = torch.arange(out_w).view(1, -1, 1, 1)
    p = torch.arange(height).view(1, 1, -1, 1)
    q = torch.arange(width).view(1, 1, 1, -1)
    ki = p - oi * sh + ph  # kernel row linking output row oi to input row p
    kj = q - oj * sw + pw
    inside = (ki >= 0) & (ki < kh) & (kj >= 0) & (kj < kw)
    taps = torch.where(inside, ki * kw + kj, torch.full_like(ki, kh * kw))
    return taps.reshape(out_h, out_w, height * width)


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that computes maps of at most ``max_input_pixels`` pixels as one matmul.

    Same parameters, state dict and results as ``nn.Conv2d`` (up to float rounding); larger maps,
    groups, dilation, string padding and non-zero padding modes take ``nn.Conv2d``'s own path.

    Args:
        *args: ``nn.Conv2d`` arguments.
        max_input_pixels: Largest ``H*W`` of the input computed densely (4 = 2x2 maps, where
            it was measured faster; see the module docstring).
        **kwargs: ``nn.Conv2d`` keyword arguments.

    Example:
        >>> conv = SmallMapConv2d(8, 16, 3, padding=1)
        >>> x = torch.randn(4, 8, 2, 2)
        >>> torch.allclose(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1), atol=1e-5)
        True
    """

    def __init__(self, *args: object, max_input_pixels: int = 4, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.max_input_pixels = max_input_pixels
        self._selections: dict[
            tuple[int, int, torch.device, torch.dtype], tuple[torch.Tensor, int, int]
        ] = {}

    def _dense_applies(self, x: torch.Tensor) -> bool:
        return (
            x.dim() == 4
            and x.shape[-2] * x.shape[-1] <= self.max_input_pixels
            and self.groups == 1
            and self.dilation == (1, 1)
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
        )

    def _selection(
        self, height: int, width: int, device: torch.device
    ) -> tuple[torch.Tensor, int, int]:
        """The tap selection for an input size, with the output height and width.

        The selection is the ``[out pixels * in pixels, taps]`` 0/1 matrix of which kernel tap
        links each pixel pair (all zeros where none does).
        """
        key = (height, width, device, self.weight.dtype)
        if key not in self._selections:
            index = tap_index(height, width, self.kernel_size, self.stride, self.padding)  # type: ignore[arg-type]
            out_h, out_w, _ = index.shape
            taps = self.kernel_size[0] * self.kernel_size[1]
            one_hot = F.one_hot(index.reshape(-1), taps + 1)[:, :taps]  # last column: unseen
            selection = one_hot.to(device=device, dtype=self.weight.dtype)
            self._selections[key] = (selection, out_h, out_w)
        return self._selections[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` (``[B, C_in, H, W]``)."""
        if not self._dense_applies(x):
            return super().forward(x)
        batch, c_in, height, width = x.shape
        c_out = self.out_channels
        selection, out_h, out_w = self._selection(height, width, x.device)
        out_pixels, in_pixels = out_h * out_w, height * width
        # Built in the weight's dtype outside autocast, so each kernel tap's gradient is summed
        # over the pixel pairs it links in full precision.
        with torch.autocast(x.device.type, enabled=False):
            dense = torch.mm(selection, self.weight.reshape(c_out * c_in, -1).t())
        # [out pixel, in pixel, C_out, C_in] -> [out pixel * C_out, in pixel * C_in]
        dense = (
            dense.view(out_pixels, in_pixels, c_out, c_in)
            .permute(0, 2, 1, 3)
            .reshape(out_pixels * c_out, in_pixels * c_in)
        )
        bias = None if self.bias is None else self.bias.repeat(out_pixels)
        flat = x.permute(0, 2, 3, 1).reshape(batch, in_pixels * c_in)
        out = F.linear(flat, dense, bias)
        return out.view(batch, out_h, out_w, c_out).permute(0, 3, 1, 2)
