"""Name -> loader lookup used by the training app."""

import os
from types import MappingProxyType
from typing import Any

from ssl_data.datasets.embedded import load_embedded_fashion_mnist
from ssl_data.datasets.fashion_mnist import load_fashion_mnist
from ssl_data.datasets.torchvision_sets import (
    load_cifar10,
    load_cifar100,
    load_image_folder,
    load_stl10,
)

__all__ = ["DATASET_NAMES", "get_dataset"]

DATASET_NAMES = (
    "fashion_mnist_embedded",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "stl10",
    "imagefolder",
)
"""Dataset names accepted by :func:`get_dataset`."""
_LOADERS = MappingProxyType(
    {
        "fashion_mnist": load_fashion_mnist,
        "cifar10": load_cifar10,
        "cifar100": load_cifar100,
        "stl10": load_stl10,
    }
)


def get_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    image_size: int | None = None,
) -> Any:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) for ``split``.

    Args:
        name: ``fashion_mnist_embedded``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``stl10``
            or ``imagefolder``.
        split: Dataset split (``train``/``test``; STL-10 also ``unlabeled``, ``train+unlabeled``;
            for ``imagefolder`` the sub-folder ``root/split`` when it exists).
        root: Data folder (required for ``imagefolder``).
        download: Allow torchvision downloads.
        image_size: Side length for ``imagefolder`` (required there).

    Returns:
        A ``TensorImageDataset`` (in memory) or, for ``imagefolder``, a lazy ``DictDataset``.
    """
    if name == "fashion_mnist_embedded":
        return load_embedded_fashion_mnist(split)
    if name == "imagefolder":
        if root is None or image_size is None:
            raise ValueError(
                "imagefolder needs root=/folder/with/class/subfolders and image_size=<pixels> "
                "(data.root=... data.image_size=... in the app)."
            )
        return load_image_folder(root, image_size, split)
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}.")
    return _LOADERS[name](root=root, split=split, download=download)
