"""Dict datasets, multi-view sampling, fold_views and batched GPU/CPU augmentation for SSL.

Submodules: :mod:`ssl_data.augment` (batched augmentation), :mod:`ssl_data.presets` (SimCLR /
BYOL / VICReg recipes) and :mod:`ssl_data.datasets` (loaders).
"""

from ssl_data import augment, datasets, presets
from ssl_data.augment import MultiViewAugment
from ssl_data.datasets import get_dataset, load_embedded_fashion_mnist
from ssl_data.dict_dataset import (
    DictDataset,
    TensorImageDataset,
    check_image_batch,
    collate_batch,
    collate_views,
)
from ssl_data.errors import DatasetUnavailableError
from ssl_data.sampler import RepeatedRandomSampler
from ssl_data.views import fold_views

__version__ = "0.1.0"

__all__ = [
    "DatasetUnavailableError",
    "DictDataset",
    "MultiViewAugment",
    "RepeatedRandomSampler",
    "TensorImageDataset",
    "__version__",
    "augment",
    "check_image_batch",
    "collate_batch",
    "collate_views",
    "datasets",
    "fold_views",
    "get_dataset",
    "load_embedded_fashion_mnist",
    "presets",
]
