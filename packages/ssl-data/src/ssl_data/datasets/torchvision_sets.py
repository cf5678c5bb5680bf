"""CIFAR-10/100, STL-10 and image folders through torchvision, as dict datasets."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_data.dict_dataset import TensorImageDataset
from ssl_data.errors import DatasetUnavailableError
from ssl_data.files import find_split, read_file_list, scan_folder
from ssl_data.image_dataset import ImageFileDataset

__all__ = [
    "default_root",
    "expected_files",
    "load_cifar10",
    "load_cifar100",
    "load_image_folder",
    "load_mnist",
    "load_stl10",
]

_EXPECTED = {
    "CIFAR10": [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
    + ["cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"],
    "CIFAR100": ["cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"],
    "STL10": [
        f"stl10_binary/{n}"
        for n in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin")
    ],
    "MNIST": [
        f"MNIST/raw/{n}"
        for n in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ],
}


def expected_files(name: str, root: Path) -> list[str]:
    """The files torchvision's ``name`` dataset reads under ``root`` that are missing."""
    return [str(root / f) for f in _EXPECTED.get(name, []) if not (root / f).is_file()]


def default_root() -> Path:
    """``$SSL_DATA_ROOT`` if set, else ``~/.cache/ssl_data``."""
    env = os.environ.get("SSL_DATA_ROOT")
    return Path(env) if env else Path.home() / ".cache" / "ssl_data"


def _open(name: str, root: Path, download: bool, make: Callable[[], Any]) -> Any:
    try:
        return make()
    except RuntimeError as err:
        if download:
            raise DatasetUnavailableError(
                f"{name}: download to {root} failed ({err}); this machine looks offline. Copy "
                f"the dataset files to a folder and pass root=/that/folder (data.root=... in the "
                "app)."
            ) from err
        missing = expected_files(name, root)
        listed = f" Missing: {', '.join(missing)}." if missing else ""
        raise DatasetUnavailableError(
            f"{name} not found under {root}.{listed} Fix: copy the files there, pass "
            "root=/folder/containing/it (data.root=...), or download=True (data.download=true "
            "in the app) on a machine with internet access."
        ) from err
    except OSError as err:  # URLError and socket errors are OSErrors
        raise DatasetUnavailableError(
            f"{name}: download to {root} failed ({err}); this machine looks offline. Copy the "
            "dataset files to a folder and pass root=/that/folder (data.root=... in the app)."
        ) from err


def _split_train(split: str, name: str) -> bool:
    if split not in ("train", "test"):
        raise ValueError(f"{name} split must be 'train' or 'test', got {split!r}.")
    return split == "train"


def _cifar(
    cls_name: str, root: str | os.PathLike[str] | None, split: str, download: bool
) -> TensorImageDataset:
    from torchvision import datasets

    train = _split_train(split, cls_name)
    path = Path(root) if root is not None else default_root()
    cls = getattr(datasets, cls_name)
    ds = _open(cls_name, path, download, lambda: cls(str(path), train=train, download=download))
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return TensorImageDataset(
        images, torch.as_tensor(ds.targets, dtype=torch.long), classes=ds.classes
    )


def load_cifar10(
    root: str | os.PathLike[str] | None = None, split: str = "train", download: bool = False
) -> TensorImageDataset:
    """CIFAR-10 in memory (``[50000|10000, 3, 32, 32]`` uint8) via torchvision.

    Args:
        root: Folder holding ``cifar-10-batches-py`` (default ``$SSL_DATA_ROOT`` or
            ``~/.cache/ssl_data``).
        split: ``"train"`` or ``"test"``.
        download: Let torchvision download it when missing.
    """
    return _cifar("CIFAR10", root, split, download)


def load_cifar100(
    root: str | os.PathLike[str] | None = None, split: str = "train", download: bool = False
) -> TensorImageDataset:
    """CIFAR-100 in memory (``[50000|10000, 3, 32, 32]`` uint8, fine labels) via torchvision."""
    return _cifar("CIFAR100", root, split, download)


def load_stl10(
    root: str | os.PathLike[str] | None = None, split: str = "unlabeled", download: bool = False
) -> TensorImageDataset:
    """STL-10 in memory (``[N, 3, 96, 96]`` uint8) via torchvision.

    Args:
        root: Folder holding ``stl10_binary``.
        split: ``"unlabeled"`` (100k, no labels), ``"train"`` (5k), ``"test"`` (8k) or
            ``"train+unlabeled"`` (labels ``-1`` for the unlabeled part, ``ignore_index=-1``).
        download: Let torchvision download it when missing (2.6 GB).
    """
    from torchvision.datasets import STL10

    splits = ("unlabeled", "train", "test", "train+unlabeled")
    if split not in splits:
        raise ValueError(f"STL-10 split must be one of {splits}, got {split!r}.")
    path = Path(root) if root is not None else default_root()
    ds = _open("STL10", path, download, lambda: STL10(str(path), split=split, download=download))
    images = torch.from_numpy(np.ascontiguousarray(ds.data))
    labels = None if split == "unlabeled" else torch.from_numpy(ds.labels.astype(np.int64))
    return TensorImageDataset(images, labels, classes=ds.classes, ignore_index=-1)


def load_image_folder(
    root: str | os.PathLike[str],
    split: str | None = None,
    channels: int = 3,
    file_list: str | os.PathLike[str] | None = None,
    labeled: bool | None = None,
    skip_bad_files: bool = False,
    image_size: int | None = None,
) -> ImageFileDataset:
    """A lazily decoded image folder (JPEG/PNG/WebP) as an :class:`ImageFileDataset`.

    Nothing is decoded here: only the file list is built. The workers decode each batch and crop
    the *whole* image to each view (training) or resize and centre-crop it to ``image_size``
    (evaluation); see :class:`ssl_data.DataModule`.

    Args:
        root: Folder of class sub-folders or of unlabeled images; ``root/split`` is used when it
            exists (``val`` and ``test`` stand in for each other).
        split: Optional sub-folder such as ``"train"`` or ``"val"``.
        channels: Output channels (1 or 3); files of the other kind are converted.
        file_list: A CSV/TXT list of paths with optional labels (relative to ``root``) instead
            of scanning the folder.
        labeled: Force class sub-folders (``True``) or a flat unlabeled folder (``False``).
        skip_bad_files: Skip unreadable files (logged, counted) instead of raising.
        image_size: Evaluation side length (the DataModule sets it from ``data.image_size``).
    """
    if file_list is not None:
        files = read_file_list(file_list, root)
    else:
        files = scan_folder(find_split(root, split), labeled=labeled)
    return ImageFileDataset(
        files, channels=channels, eval_size=image_size or 224, skip_bad_files=skip_bad_files
    )


def load_mnist(
    root: str | os.PathLike[str] | None = None, split: str = "train", download: bool = False
) -> TensorImageDataset:
    """MNIST in memory (``[60000|10000, 1, 28, 28]`` uint8) via torchvision.

    Args:
        root: Folder holding ``MNIST/raw`` (default ``$SSL_DATA_ROOT`` or ``~/.cache/ssl_data``).
        split: ``"train"`` or ``"test"``.
        download: Let torchvision download it when missing.
    """
    from torchvision.datasets import MNIST

    train = _split_train(split, "MNIST")
    path = Path(root) if root is not None else default_root()
    ds = _open("MNIST", path, download, lambda: MNIST(str(path), train=train, download=download))
    return TensorImageDataset(ds.data.unsqueeze(1).contiguous(), ds.targets.long(), ds.classes)
