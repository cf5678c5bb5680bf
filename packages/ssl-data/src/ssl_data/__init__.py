"""Dict datasets, worker-process loaders, view recipes and batched GPU/CPU augmentation for SSL.

Submodules: :mod:`ssl_data.augment` (batched augmentation), :mod:`ssl_data.presets` (SimCLR /
BYOL / VICReg recipes), :mod:`ssl_data.recipe` (view recipes, multi-crop),
:mod:`ssl_data.datasets` (sources) and :mod:`ssl_data.loader` (resumable loaders).
``ssl_data.DataModule`` (a Lightning DataModule) needs ``lightning`` and is imported on first use.
"""

from typing import TYPE_CHECKING, Any

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
from ssl_data.files import FileList, read_file_list, scan_folder
from ssl_data.image_dataset import (
    LOCAL_IMAGE_KEY,
    LOCAL_SAMPLE_IDX_KEY,
    CorruptImageError,
    ImageFileDataset,
)
from ssl_data.loader import ShardSampler, make_loader
from ssl_data.recipe import ViewRecipe, multicrop_views
from ssl_data.sampler import RepeatedRandomSampler
from ssl_data.views import fold_views

if TYPE_CHECKING:  # imported on first use (needs lightning); seen by type checkers and the docs
    from ssl_data.datamodule import DataModule

__version__ = "0.1.0"

__all__ = [
    "LOCAL_IMAGE_KEY",
    "LOCAL_SAMPLE_IDX_KEY",
    "CorruptImageError",
    "DataModule",
    "DatasetUnavailableError",
    "DictDataset",
    "FileList",
    "ImageFileDataset",
    "MultiViewAugment",
    "RepeatedRandomSampler",
    "ShardSampler",
    "TensorImageDataset",
    "ViewRecipe",
    "__version__",
    "augment",
    "check_image_batch",
    "collate_batch",
    "collate_views",
    "datasets",
    "fold_views",
    "get_dataset",
    "load_embedded_fashion_mnist",
    "make_loader",
    "multicrop_views",
    "presets",
    "read_file_list",
    "scan_folder",
]


def __getattr__(name: str) -> Any:
    """Import ``DataModule`` lazily: it needs lightning, the rest of ssl_data does not."""
    if name == "DataModule":
        from ssl_data.datamodule import DataModule

        return DataModule
    raise AttributeError(f"module 'ssl_data' has no attribute {name!r}")
