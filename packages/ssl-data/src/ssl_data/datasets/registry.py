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
    load_mnist,
    load_stl10,
)

__all__ = ["DATASET_NAMES", "get_dataset"]

DATASET_NAMES = (
    "fashion_mnist_embedded",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "stl10",
    "mnist",
    "imagefolder",
    "hf",
)
"""Dataset names accepted by :func:`get_dataset`."""
_LOADERS = MappingProxyType(
    {
        "fashion_mnist": load_fashion_mnist,
        "cifar10": load_cifar10,
        "cifar100": load_cifar100,
        "stl10": load_stl10,
        "mnist": load_mnist,
    }
)


def get_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    image_size: int | None = None,
    channels: int = 3,
    file_list: str | os.PathLike[str] | None = None,
    labeled: bool | None = None,
    skip_bad_files: bool = False,
    hf_name: str | None = None,
    image_key: str = "image",
    label_key: str | None = "label",
) -> Any:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`) for ``split``.

    Args:
        name: ``fashion_mnist_embedded``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``stl10``,
            ``mnist``, ``imagefolder`` or ``hf`` (Hugging Face, optional extra).
        split: Dataset split (``train``/``test``; STL-10 also ``unlabeled``, ``train+unlabeled``;
            for ``imagefolder`` the sub-folder ``root/split`` when it exists; for ``hf`` the
            dataset's split).
        root: Data folder (required for ``imagefolder``; a saved dataset folder for ``hf``).
        download: Allow torchvision downloads.
        image_size: Evaluation side length of ``imagefolder``/``hf`` images.
        channels: Channels of ``imagefolder``/``hf`` images (1 or 3).
        file_list: ``imagefolder``: a CSV/TXT list of paths (optional labels) under ``root``.
        labeled: ``imagefolder``: force class sub-folders (``True``) or a flat folder (``False``).
        skip_bad_files: ``imagefolder``/``hf``: skip unreadable images (logged, counted).
        hf_name: ``hf``: the dataset name on the Hub (or use ``root`` for a saved one).
        image_key: ``hf``: the image column.
        label_key: ``hf``: the label column (``None``: unlabeled).

    Returns:
        A ``TensorImageDataset`` (in memory) or a lazily decoded ``ImageFileDataset``.
    """
    if name == "fashion_mnist_embedded":
        return load_embedded_fashion_mnist(split)
    if name == "imagefolder":
        if root is None:
            raise ValueError("imagefolder needs root=/folder/of/images (data.root=... in the app).")
        return load_image_folder(
            root, split, channels, file_list, labeled, skip_bad_files, image_size
        )
    if name == "hf":
        from ssl_data.datasets.hf import load_hf_dataset

        source = hf_name or root
        if source is None:
            raise ValueError(
                "hf needs root=<hub name or saved dataset folder> (data.root=... in the app)."
            )
        ds = load_hf_dataset(source, split, image_key, label_key, channels)
        ds.skip_bad_files = skip_bad_files
        if image_size is not None:
            ds.eval_size = int(image_size)
        return ds
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}.")
    return _LOADERS[name](root=root, split=split, download=download)
