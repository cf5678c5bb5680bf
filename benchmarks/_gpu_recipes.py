"""The GPU benchmark's settings and recipes: model, loss, augmentation, data and timing.

Every runner (hand-written loop, ours, the peers) builds its model from :func:`build_model` and
reads its augmentation parameters from :class:`Setting`, so the same work is timed everywhere.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import ssl_core
import ssl_data
import ssl_forwards
import ssl_losses

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Setting:
    """One method / model / image size / batch size, with its augmentation parameters.

    Attributes:
        name: Row label.
        method: ``"simclr"`` or ``"barlow_twins"`` (``"dino"`` once :func:`dino_available`).
        model: torchvision ResNet name or timm model name.
        image_size: Crop size of every view.
        batch_size: Source images per step (two views each).
        jitter_strength: Colour jitter ``(0.8s, 0.8s, 0.8s, 0.2s)`` with p=0.8.
        blur: Gaussian blur p=0.5 (kernel about a tenth of the image side).
        needs: Import names the setting needs (skipped cleanly when one is missing).
    """

    name: str
    method: str
    model: str
    image_size: int
    batch_size: int
    jitter_strength: float = 1.0
    blur: bool = True
    needs: tuple[str, ...] = ()
    low_resolution: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def blur_kernel(self) -> int:
        """Odd kernel size, about 10% of the image side (SimCLR)."""
        return max(3, (self.image_size // 10) | 1)

    def jitter(self) -> tuple[float, float, float, float]:
        """Brightness, contrast, saturation, hue."""
        s = self.jitter_strength
        return (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s)


@dataclass(frozen=True)
class Variant:
    """A precision / memory-format / compile combination."""

    name: str
    precision: str  # Lightning's precision string: "32-true" or "bf16-mixed"
    channels_last: bool = False
    compile: bool = False

    @property
    def bf16(self) -> bool:
        """Whether the forward runs under bf16 autocast."""
        return self.precision.startswith("bf16")


SETTINGS = [
    Setting("simclr r18 32px b512", "simclr", "resnet18", 32, 512, blur=False, low_resolution=True),
    Setting("simclr r50 224px b256", "simclr", "resnet50", 224, 256),
    Setting(
        "barlow vit-s/16 224px b256",
        "barlow_twins",
        "vit_small_patch16_224",
        224,
        256,
        jitter_strength=0.5,
        needs=("timm",),
    ),
]
TINY_SETTINGS = [  # the same code paths at CPU sizes (a 4-stage SmallResNet for the first)
    Setting("simclr small-resnet 16px b4 (tiny)", "simclr", "small_resnet", 16, 4, blur=False),
    Setting(
        "simclr r18 16px b2 (tiny)", "simclr", "resnet18", 16, 2, blur=False, low_resolution=True
    ),
    Setting(
        "barlow vit-s/16 32px b2 (tiny)",
        "barlow_twins",
        "vit_small_patch16_224",
        32,
        2,
        jitter_strength=0.5,
        needs=("timm",),
    ),
]
VARIANTS = [
    Variant("fp32", "32-true"),
    Variant("bf16", "bf16-mixed"),
    Variant("bf16 + channels_last + compile", "bf16-mixed", channels_last=True, compile=True),
]


def dino_available() -> bool:
    """Hook for the DINO ViT-S/16 2x224 + 6x96 multi-crop setting (batch 128); not written yet.

    Add ``Setting("dino vit-s/16 2x224+6x96 b128", "dino", "vit_small_patch16_224", 224, 128)``
    to :data:`SETTINGS` and a ``"dino"`` branch to :func:`build_model` once
    ``ssl_forwards.dino_forward`` exists (the multi-crop batch contract: ``local_image``).
    """
    return hasattr(ssl_forwards, "dino_forward")


def missing_needs(setting: Setting) -> list[str]:
    """The setting's imports that are not installed."""
    return [n for n in setting.needs if importlib.util.find_spec(n) is None]


def build_backbone(setting: Setting) -> nn.Module:
    """The backbone with ``out_features`` set (torchvision ResNet or timm ViT)."""
    if setting.model.startswith("vit"):
        import timm

        backbone = timm.create_model(
            setting.model, num_classes=0, img_size=setting.image_size, dynamic_img_size=True
        )
        backbone.out_features = backbone.num_features
        return backbone
    if setting.model == "small_resnet":
        return ssl_core.backbone.SmallResNet(in_channels=3, widths=(8, 16, 16, 16))
    return ssl_core.backbone.from_torchvision(setting.model, low_resolution=setting.low_resolution)


def build_model(setting: Setting) -> dict[str, nn.Module]:
    """``{"backbone", "projector", "loss"}`` for the setting's method (seeded: same weights)."""
    torch.manual_seed(0)
    backbone = build_backbone(setting)
    width = backbone.out_features
    if setting.method == "simclr":
        projector = ssl_core.backbone.MLP(width, 2048, 128)
        loss: nn.Module = ssl_losses.NTXEntLoss(temperature=0.2)
    elif setting.method == "barlow_twins":
        projector = ssl_core.backbone.MLP(width, [2048, 2048], 2048)
        loss = ssl_losses.BarlowTwinsLoss(lambda_=5e-3)
    else:
        raise ValueError(f"unknown method {setting.method!r} (see dino_available for DINO)")
    return {"backbone": backbone, "projector": projector, "loss": loss}


def our_forward(setting: Setting) -> Callable[..., dict[str, Any]]:
    """The ssl_forwards function of the setting's method."""
    return {
        "simclr": ssl_forwards.simclr_forward,
        "barlow_twins": ssl_forwards.barlow_twins_forward,
    }[setting.method]


def loss_attribute(setting: Setting) -> str:
    """The Module attribute the forward reads the loss from."""
    return {"simclr": "simclr_loss", "barlow_twins": "barlow_loss"}[setting.method]


def our_augment(setting: Setting) -> ssl_data.MultiViewAugment:
    """Our batched on-device augmentation: two views of the setting's recipe."""
    return ssl_data.presets.simclr_views(
        setting.image_size, 2, MEAN, STD, strength=setting.jitter_strength, blur=setting.blur
    )


def synthetic_images(setting: Setting, n: int) -> torch.Tensor:
    """``n`` random uint8 images ``[n, 3, S, S]`` (the source images before cropping)."""
    g = torch.Generator().manual_seed(0)
    size = setting.image_size
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def device() -> torch.device:
    """CUDA when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize() -> None:
    """Wait for the GPU (no-op on CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def seconds_per_call(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    """Mean wall time of ``fn`` after ``warmup`` calls, GPU synchronised around the timing."""
    for _ in range(warmup):
        fn()
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize()
    return (time.perf_counter() - start) / repeats
