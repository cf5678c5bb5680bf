"""Hugging Face ``datasets`` as an image source (optional: ``pip install ssl-data[hf]``)."""

from __future__ import annotations

import os
from typing import Any

import torch

from ssl_data.files import FileList
from ssl_data.image_dataset import ImageFileDataset

__all__ = ["HFImageDataset", "load_hf_dataset"]


def _to_tensor(value: Any) -> torch.Tensor:
    """A uint8 ``[C, H, W]`` tensor from a PIL image, an ``{"bytes": ...}`` dict or an array."""
    from torchvision.io import decode_image
    from torchvision.transforms.v2 import functional as tvf

    if isinstance(value, dict) and value.get("bytes") is not None:
        data = torch.frombuffer(bytearray(value["bytes"]), dtype=torch.uint8)
        return decode_image(data)
    if isinstance(value, dict) and value.get("path"):
        return decode_image(value["path"])
    if hasattr(value, "convert") and hasattr(value, "size"):  # a PIL image
        mode = value.mode if value.mode in ("L", "RGB", "RGBA") else "RGB"
        return tvf.pil_to_tensor(value.convert(mode))
    array = torch.as_tensor(value)
    if array.ndim == 2:
        return array.unsqueeze(0).to(torch.uint8)
    return array.permute(2, 0, 1).to(torch.uint8) if array.shape[-1] in (1, 3, 4) else array


class HFImageDataset(ImageFileDataset):
    """An :class:`ImageFileDataset` whose images come from a Hugging Face dataset's column.

    Args:
        hf_dataset: A ``datasets.Dataset``.
        image_key: The image column.
        label_key: The label column, or ``None``.
        channels: Output channels (1 or 3).
    """

    def __init__(
        self,
        hf_dataset: Any,
        image_key: str = "image",
        label_key: str | None = "label",
        channels: int = 3,
    ) -> None:
        columns = list(getattr(hf_dataset, "column_names", []))
        if image_key not in columns:
            raise KeyError(
                f"the Hugging Face dataset has no column {image_key!r} (columns: {columns}); "
                "pass image_key=..."
            )
        labels = None
        if label_key is not None and label_key in columns:
            labels = tuple(int(v) for v in hf_dataset[label_key])
        names = [f"hf[{i}]" for i in range(len(hf_dataset))]
        super().__init__(FileList(tuple(names), labels), channels=channels, eval_size=224)
        self.hf_dataset = hf_dataset.select_columns([image_key])
        self.image_key = image_key

    def load(self, index: int) -> torch.Tensor:
        """Decode row ``index``'s image."""
        return _to_tensor(self.hf_dataset[int(index)][self.image_key])

    def describe(self, index: int) -> str:
        """The row, for messages."""
        return f"Hugging Face dataset row {index}"


def load_hf_dataset(
    name_or_path: str | os.PathLike[str],
    split: str = "train",
    image_key: str = "image",
    label_key: str | None = "label",
    channels: int = 3,
    **load_kwargs: Any,
) -> HFImageDataset:
    """Load a Hugging Face dataset by name (``load_dataset``) or from a ``save_to_disk`` folder.

    Raises:
        ImportError: ``datasets`` is not installed (the message gives the install command).
    """
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            "Hugging Face datasets are an optional extra: pip install 'ssl-data[hf]' (or "
            "uv pip install datasets)."
        ) from err
    if os.path.isdir(os.fspath(name_or_path)):
        loaded = datasets.load_from_disk(os.fspath(name_or_path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise KeyError(f"{name_or_path} has splits {list(loaded)}, not {split!r}.")
            loaded = loaded[split]
    else:
        loaded = datasets.load_dataset(os.fspath(name_or_path), split=split, **load_kwargs)
    return HFImageDataset(loaded, image_key, label_key, channels)
