"""Fashion-MNIST from IDX files (explicit root, the Debian package, or torchvision's download)."""

import os
from pathlib import Path

import torch

from ssl_data.datasets.idx import read_idx
from ssl_data.dict_dataset import TensorImageDataset
from ssl_data.errors import DatasetUnavailableError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "SYSTEM_FASHION_MNIST",
    "find_fashion_mnist",
    "load_fashion_mnist",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""Fashion-MNIST class names, indexed by label (0 = T-shirt/top ... 9 = Ankle boot)."""
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_PREFIX = {"train": "train", "test": "t10k"}


def _check_split(split: str) -> str:
    if split not in _PREFIX:
        raise ValueError(f"Fashion-MNIST split must be 'train' or 'test', got {split!r}.")
    return split


def _files_in(directory: Path, split: str) -> tuple[Path, Path] | None:
    prefix = _PREFIX[split]
    for sub in (directory, directory / "FashionMNIST" / "raw", directory / "raw"):
        for suffix in (".gz", ""):
            images = sub / f"{prefix}-images-idx3-ubyte{suffix}"
            labels = sub / f"{prefix}-labels-idx1-ubyte{suffix}"
            if images.is_file() and labels.is_file():
                return images, labels
    return None


def find_fashion_mnist(
    root: str | os.PathLike[str] | None = None, split: str = "train"
) -> tuple[Path, Path] | None:
    """Paths of the image and label IDX files of ``split``, or ``None`` if not found.

    Looks in ``root`` (also ``root/FashionMNIST/raw``, torchvision's layout) when given, else in
    ``/usr/share/datasets/fashion-mnist``.
    """
    directory = Path(root) if root is not None else SYSTEM_FASHION_MNIST
    return _files_in(directory, _check_split(split))


def _download(root: Path, split: str) -> tuple[Path, Path]:
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(root), train=split == "train", download=True)
    except (OSError, RuntimeError) as err:
        raise DatasetUnavailableError(
            f"Fashion-MNIST download to {root} failed ({err}); this machine looks offline. "
            "Install the Debian package (`apt-get install dataset-fashion-mnist`), copy the IDX "
            "files to a folder and pass root=/that/folder (data.root=... in the app), or use "
            "load_embedded_fashion_mnist() / dataset name fashion_mnist_embedded."
        ) from err
    found = _files_in(root, split)
    if found is None:
        raise DatasetUnavailableError(f"Fashion-MNIST download left no IDX files under {root}.")
    return found


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None, split: str = "train", download: bool = False
) -> TensorImageDataset:
    """Load Fashion-MNIST as an in-memory ``TensorImageDataset`` of ``[N, 1, 28, 28]`` uint8.

    Search order: ``root`` if given (only there), else ``/usr/share/datasets/fashion-mnist``
    (Debian package ``dataset-fashion-mnist``); if nothing is found and ``download=True``,
    torchvision downloads it to ``root`` (default ``~/.cache/ssl_data``).

    Args:
        root: Folder with the (optionally gzipped) IDX files.
        split: ``"train"`` (60k) or ``"test"`` (10k).
        download: Download with torchvision when the files are missing.

    Raises:
        DatasetUnavailableError: when the files are missing and cannot be downloaded.
    """
    _check_split(split)
    found = find_fashion_mnist(root, split)
    if found is None:
        if not download:
            where = root if root is not None else SYSTEM_FASHION_MNIST
            raise DatasetUnavailableError(
                f"Fashion-MNIST ({split}) IDX files not found in {where}. Fix: "
                "`apt-get install dataset-fashion-mnist`, or pass download=True "
                "(data.download=true in the app), or root=/folder/with/idx/files "
                "(data.root=...), or use the embedded subset (fashion_mnist_embedded)."
            )
        target = Path(root) if root is not None else Path.home() / ".cache" / "ssl_data"
        found = _download(target, split)
    images = torch.from_numpy(read_idx(found[0])).unsqueeze(1)
    labels = torch.from_numpy(read_idx(found[1]).astype("int64"))
    return TensorImageDataset(images.contiguous(), labels, classes=FASHION_MNIST_CLASSES)
