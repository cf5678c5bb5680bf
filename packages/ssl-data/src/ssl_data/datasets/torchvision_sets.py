"""CIFAR-10/100, STL-10 and image folders through torchvision, as dict datasets."""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssl_data.dict_dataset import DictDataset, TensorImageDataset
from ssl_data.errors import DatasetUnavailableError

__all__ = ["default_root", "load_cifar10", "load_cifar100", "load_image_folder", "load_stl10"]


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
        raise DatasetUnavailableError(
            f"{name} not found under {root}. Fix: pass download=True (data.download=true in the "
            "app) or root=/folder/containing/it (data.root=...)."
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
    root: str | os.PathLike[str], image_size: int, split: str | None = None
) -> DictDataset:
    """A lazily decoded ``ImageFolder`` (``root/class_x/*.jpg``) as a dict dataset.

    Each image is resized (shorter side) and centre-cropped to ``image_size`` and returned as a
    uint8 ``[3, image_size, image_size]`` tensor, so batches stack and the batched augmentation
    applies. Collate with :func:`ssl_data.collate_batch`.

    Args:
        root: Folder of class sub-folders; ``root/split`` is used when ``split`` is given and that
            folder exists.
        image_size: Stored side length in pixels (augmentations may crop further).
        split: Optional sub-folder such as ``"train"`` or ``"val"``.
    """
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    path = Path(root)
    if split is not None and (path / split).is_dir():
        path = path / split
    if not path.is_dir():
        raise DatasetUnavailableError(
            f"image folder {path} does not exist; pass root=/folder/with/class/subfolders "
            "(data.root=... in the app)."
        )
    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.RGB(),
            v2.Resize(image_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToPureTensor(),
        ]
    )
    try:
        folder = ImageFolder(str(path), transform=transform)
    except (FileNotFoundError, RuntimeError) as err:
        raise DatasetUnavailableError(
            f"no images found under {path} ({err}); it needs one sub-folder per class with "
            "image files."
        ) from err
    return DictDataset(folder, names=("image", "label"))
