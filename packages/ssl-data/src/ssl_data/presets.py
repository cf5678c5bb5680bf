"""Augmentation recipes of SimCLR, BYOL and VICReg, batched and per-sample (torchvision v2).

Recipes depend on the image size: at 28-32 px (``image_size <= 64``) there is no Gaussian blur,
as in SimCLR's CIFAR recipe; from 96 px on the blur of the ImageNet recipes is used with a kernel
of about 10% of the image size (odd). Colour operations are no-ops on C=1 images except
brightness and contrast (see :mod:`ssl_data.augment`). ``mean``/``std`` default to the ImageNet
statistics; pass ``dataset.mean``/``dataset.std`` (one value per channel) for other data.
"""

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ssl_data.augment import (
    ColorJitter,
    Compose,
    GaussianBlur,
    MultiViewAugment,
    Normalize,
    RandomGrayscale,
    RandomResizedCrop,
    Resize,
    Solarize,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TorchvisionViews",
    "blur_kernel_size",
    "byol_views",
    "crop_views",
    "eval_transform",
    "simclr_pipeline",
    "simclr_views",
    "torchvision_simclr",
    "torchvision_views",
    "vicreg_views",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet in [0, 1] units, the default normalisation."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet in [0, 1] units."""
SMALL_IMAGE_MAX = 64


def blur_kernel_size(image_size: int) -> int:
    """Odd kernel size of about 10% of ``image_size`` (9 at 96 px, 23 at 224 px)."""
    k = max(3, int(0.1 * image_size))
    return k if k % 2 else k + 1


def _check_size(image_size: int) -> int:
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}.")
    return image_size


def _blur_default(image_size: int, blur: bool | None) -> bool:
    return image_size > SMALL_IMAGE_MAX if blur is None else blur


def simclr_pipeline(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    strength: float = 1.0,
    scale: tuple[float, float] = (0.08, 1.0),
    blur_p: float | None = None,
    solarize_p: float = 0.0,
    jitter: tuple[float, float, float, float] | None = None,
    jitter_p: float = 0.8,
    grayscale_p: float = 0.2,
    fused: bool | None = None,
) -> Compose:
    """One view's batched pipeline (crop+flip, jitter, grayscale, blur, solarize, normalize).

    Args:
        image_size: Output side in pixels.
        mean: Normalisation mean per channel.
        std: Normalisation std per channel.
        strength: Colour jitter strength ``s`` (SimCLR: ``(0.8s, 0.8s, 0.8s, 0.2s)``).
        scale: Crop area range.
        blur_p: Blur probability; ``None`` = 0.5 for images > 64 px, else no blur.
        solarize_p: Solarization probability.
        jitter: Explicit ``(brightness, contrast, saturation, hue)``; overrides ``strength``.
        jitter_p: Probability of colour jitter.
        grayscale_p: Probability of grayscale.
        fused: ``None``: CPU batches in the installed fused C kernel when there is one;
            ``False``: the eager ops; ``True``: the fused kernel, compiled now if the install
            has none (see :class:`~ssl_data.augment.Compose`).

    Returns:
        A :class:`~ssl_data.augment.Compose`.
    """
    image_size = _check_size(image_size)
    if jitter is None:
        jitter = (0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength)
    if blur_p is None:
        blur_p = 0.5 if image_size > SMALL_IMAGE_MAX else 0.0
    ops: list[Callable[..., Any]] = [
        RandomResizedCrop(image_size, scale=scale, hflip_p=0.5),
        ColorJitter(*jitter, p=jitter_p),
        RandomGrayscale(grayscale_p),
    ]
    if blur_p > 0:
        ops.append(GaussianBlur(blur_kernel_size(image_size), (0.1, 2.0), p=blur_p))
    if solarize_p > 0:
        ops.append(Solarize(0.5, p=solarize_p))
    ops.append(Normalize(mean, std))
    return Compose(ops, fused=fused)


def simclr_views(
    image_size: int,
    n_views: int = 2,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    strength: float = 1.0,
    scale: tuple[float, float] = (0.08, 1.0),
    blur: bool | None = None,
    seed: int = 0,
    fused: bool | None = None,
) -> MultiViewAugment:
    """SimCLR (Chen et al., 2020): ``n_views`` views of the same recipe.

    Random resized crop (``scale``), flip, colour jitter ``(0.8s, 0.8s, 0.8s, 0.2s)`` with p=0.8,
    grayscale p=0.2, and for images above 64 px Gaussian blur p=0.5 (``blur`` overrides).
    ``fused``: the fused CPU kernel, as :func:`simclr_pipeline` says.

    Example:
        >>> aug = simclr_views(32, mean=(0.5,), std=(0.5,))
        >>> aug({"image": torch.zeros(4, 1, 32, 32, dtype=torch.uint8)})["image"].shape
        torch.Size([8, 1, 32, 32])
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}.")
    blur_p = 0.5 if _blur_default(_check_size(image_size), blur) else 0.0
    pipe = simclr_pipeline(image_size, mean, std, strength, scale, blur_p=blur_p, fused=fused)
    return MultiViewAugment((pipe, n_views), seed=seed)


def byol_views(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: tuple[float, float] = (0.08, 1.0),
    blur: bool | None = None,
    seed: int = 0,
    fused: bool | None = None,
) -> MultiViewAugment:
    """BYOL (Grill et al., 2020): two asymmetric views.

    Both: crop (``scale``), flip, colour jitter ``(0.4, 0.4, 0.2, 0.1)`` p=0.8, grayscale p=0.2.
    View 0: blur p=1.0, solarize p=0; view 1: blur p=0.1, solarize p=0.2. Blur only above 64 px
    unless ``blur`` says otherwise (solo-learn's small-image recipe). ``fused``: see
    :func:`simclr_pipeline`.
    """
    image_size = _check_size(image_size)
    use_blur = _blur_default(image_size, blur)
    views = [
        simclr_pipeline(
            image_size,
            mean,
            std,
            scale=scale,
            jitter=(0.4, 0.4, 0.2, 0.1),
            blur_p=blur_p if use_blur else 0.0,
            solarize_p=sol_p,
            fused=fused,
        )
        for blur_p, sol_p in ((1.0, 0.0), (0.1, 0.2))
    ]
    return MultiViewAugment(views, seed=seed)


def vicreg_views(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: tuple[float, float] = (0.08, 1.0),
    blur: bool | None = None,
    seed: int = 0,
    fused: bool | None = None,
) -> MultiViewAugment:
    """VICReg (Bardes et al., 2022): the BYOL recipe (the paper uses BYOL's augmentations)."""
    return byol_views(image_size, mean, std, scale=scale, blur=blur, seed=seed, fused=fused)


def crop_views(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: tuple[float, float] = (0.2, 1.0),
    hflip_p: float = 0.5,
    n_views: int = 1,
    seed: int = 0,
) -> MultiViewAugment:
    """Random resized crop and flip only, then normalise (MAE, I-JEPA: no photometric ops).

    MAE crops with ``scale=(0.2, 1.0)``, I-JEPA with ``(0.3, 1.0)``; neither uses colour jitter.

    Example:
        >>> aug = crop_views(28, mean=(0.5,), std=(0.5,))
        >>> aug({"image": torch.zeros(4, 1, 28, 28, dtype=torch.uint8)})["image"].shape
        torch.Size([4, 1, 28, 28])
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}.")
    size = _check_size(image_size)
    pipe = Compose([RandomResizedCrop(size, scale=scale, hflip_p=hflip_p), Normalize(mean, std)])
    return MultiViewAugment((pipe, n_views), seed=seed)


def eval_transform(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Compose:
    """Evaluation transform: resize to ``image_size`` if needed and normalise; keeps the rows."""
    image_size = _check_size(image_size)
    return Compose([Resize(image_size), Normalize(mean, std)])


class TorchvisionViews:
    """Per-sample multi-view transform for :class:`~ssl_data.DictDataset` (torchvision v2).

    Replaces ``sample["image"]`` by a list of views (one per transform); collate the samples with
    :func:`ssl_data.collate_views` to get the same flat view-major layout as the batched path.

    Args:
        transforms: One torchvision transform per view.
    """

    def __init__(self, transforms: Sequence[Callable[[Any], Any]]) -> None:
        if not transforms:
            raise ValueError("TorchvisionViews needs at least one view transform.")
        self.transforms = list(transforms)

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``sample`` whose image is the list of views."""
        if "image" not in sample:
            raise KeyError(f"sample has no 'image' field (fields: {sorted(sample)}).")
        out = dict(sample)
        out["image"] = [t(sample["image"]) for t in self.transforms]
        return out


def _torchvision_pipeline(
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    jitter: tuple[float, float, float, float],
    blur_p: float,
    solarize_p: float,
    scale: tuple[float, float],
) -> Any:
    from torchvision.transforms import v2  # imported lazily: torchvision is slow to import

    ops: list[Any] = [
        v2.ToImage(),
        v2.RandomResizedCrop(image_size, scale=scale, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(*jitter)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]
    if blur_p > 0:
        ops.append(
            v2.RandomApply([v2.GaussianBlur(blur_kernel_size(image_size), (0.1, 2.0))], p=blur_p)
        )
    if solarize_p > 0:
        ops.append(v2.RandomSolarize(threshold=0.5, p=solarize_p))
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


def torchvision_simclr(
    image_size: int,
    n_views: int = 2,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    strength: float = 1.0,
    scale: tuple[float, float] = (0.08, 1.0),
    blur: bool | None = None,
) -> TorchvisionViews:
    """The SimCLR recipe of :func:`simclr_views` as per-sample torchvision v2 transforms.

    Use as ``DictDataset(dataset, transform=torchvision_simclr(32))`` with
    ``collate_fn=ssl_data.collate_views``.
    """
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}.")
    blur_p = 0.5 if _blur_default(_check_size(image_size), blur) else 0.0
    s = strength
    pipe = _torchvision_pipeline(
        image_size, mean, std, (0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s), blur_p, 0.0, scale
    )
    return TorchvisionViews([pipe] * n_views)


def torchvision_views(
    image_size: int,
    recipe: str = "byol",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    blur: bool | None = None,
) -> TorchvisionViews:
    """Per-sample torchvision v2 version of the asymmetric BYOL/VICReg recipes.

    Args:
        image_size: Output side in pixels.
        recipe: ``"byol"`` or ``"vicreg"`` (same augmentations).
        mean: Normalisation mean per channel.
        std: Normalisation std per channel.
        blur: Force blur on/off (default: only above 64 px).
    """
    if recipe not in ("byol", "vicreg"):
        raise ValueError(f"recipe must be 'byol' or 'vicreg', got {recipe!r}.")
    use_blur = _blur_default(_check_size(image_size), blur)
    return TorchvisionViews(
        [
            _torchvision_pipeline(
                image_size,
                mean,
                std,
                (0.4, 0.4, 0.2, 0.1),
                blur_p if use_blur else 0.0,
                sol_p,
                (0.08, 1.0),
            )
            for blur_p, sol_p in ((1.0, 0.0), (0.1, 0.2))
        ]
    )
