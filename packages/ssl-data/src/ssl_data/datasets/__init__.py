"""Dataset loaders returning dict datasets (in-memory uint8 ``TensorImageDataset`` if they fit)."""

from ssl_data.datasets.embedded import build_embedded_subset, load_embedded_fashion_mnist
from ssl_data.datasets.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from ssl_data.datasets.idx import read_idx, write_idx
from ssl_data.datasets.registry import DATASET_NAMES, get_dataset
from ssl_data.datasets.torchvision_sets import (
    load_cifar10,
    load_cifar100,
    load_image_folder,
    load_stl10,
)

__all__ = [
    "DATASET_NAMES",
    "FASHION_MNIST_CLASSES",
    "build_embedded_subset",
    "get_dataset",
    "load_cifar10",
    "load_cifar100",
    "load_embedded_fashion_mnist",
    "load_fashion_mnist",
    "load_image_folder",
    "load_stl10",
    "read_idx",
    "write_idx",
]
