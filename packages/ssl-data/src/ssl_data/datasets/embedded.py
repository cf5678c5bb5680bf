"""A small real Fashion-MNIST subset shipped inside ssl_data (works offline on any machine).

10,000 training and 2,000 test images (1,000 / 200 per class): the first images of each class in
the official train / test files, in their original order (deterministic; ``train_index`` /
``test_index`` in the archive are the positions in the official files). Fashion-MNIST is
Copyright (c) 2017 Zalando SE, https://github.com/zalandoresearch/fashion-mnist, MIT licence; the
licence text is shipped beside the data in ``ssl_data/_embedded/``.
"""

import os
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ssl_data.datasets.fashion_mnist import FASHION_MNIST_CLASSES, find_fashion_mnist
from ssl_data.datasets.idx import read_idx
from ssl_data.dict_dataset import TensorImageDataset
from ssl_data.errors import DatasetUnavailableError

__all__ = ["EMBEDDED_FILE", "build_embedded_subset", "load_embedded_fashion_mnist"]

EMBEDDED_FILE = "fashion_mnist_subset.npz"
PER_CLASS = {"train": 1000, "test": 200}


def load_embedded_fashion_mnist(split: str = "train") -> TensorImageDataset:
    """Load the shipped Fashion-MNIST subset: ``[10000|2000, 1, 28, 28]`` uint8, 10 classes.

    Args:
        split: ``"train"`` (10,000 images) or ``"test"`` (2,000 images), class-balanced.

    Example:
        >>> ds = load_embedded_fashion_mnist("test")
        >>> len(ds), ds.num_classes
        (2000, 10)
    """
    if split not in PER_CLASS:
        raise ValueError(f"embedded Fashion-MNIST split must be 'train' or 'test', got {split!r}.")
    source = resources.files("ssl_data") / "_embedded" / EMBEDDED_FILE
    try:
        with source.open("rb") as f, np.load(f) as archive:
            images = archive[f"{split}_images"]
            labels = archive[f"{split}_labels"]
    except FileNotFoundError as err:
        raise DatasetUnavailableError(
            f"the embedded subset {EMBEDDED_FILE} is missing from the ssl_data installation; "
            "reinstall ssl-data (`uv sync --reinstall-package ssl-data`)."
        ) from err
    return TensorImageDataset(
        torch.from_numpy(images).unsqueeze(1).contiguous(),
        torch.from_numpy(labels.astype(np.int64)),
        classes=FASHION_MNIST_CLASSES,
    )


def _first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    chosen = [np.flatnonzero(labels == c)[:per_class] for c in range(len(FASHION_MNIST_CLASSES))]
    if any(len(c) < per_class for c in chosen):
        raise ValueError(f"the source split has fewer than {per_class} images in some class.")
    return np.sort(np.concatenate(chosen))


def build_embedded_subset(
    out_path: str | os.PathLike[str], source_root: str | os.PathLike[str] | None = None
) -> Path:
    """Rebuild the embedded archive from the official IDX files (how the shipped file was made).

    Args:
        out_path: Where to write the ``.npz``.
        source_root: Folder with the official IDX files (default: the Debian package's folder).

    Returns:
        ``out_path`` as a ``Path``.
    """
    arrays: dict[str, np.ndarray] = {}
    for split, per_class in PER_CLASS.items():
        found = find_fashion_mnist(source_root, split)
        if found is None:
            raise DatasetUnavailableError(
                "official Fashion-MNIST IDX files not found; `apt-get install "
                "dataset-fashion-mnist` or pass source_root=/folder/with/idx/files."
            )
        images, labels = read_idx(found[0]), read_idx(found[1])
        index = _first_per_class(labels, per_class)
        arrays[f"{split}_images"] = images[index]
        arrays[f"{split}_labels"] = labels[index].astype(np.uint8)
        arrays[f"{split}_index"] = index.astype(np.int32)
    out = Path(out_path)
    np.savez_compressed(out, **arrays)
    return out
