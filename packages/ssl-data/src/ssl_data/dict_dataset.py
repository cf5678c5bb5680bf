"""Dict-sample datasets: a wrapper for any map-style dataset and an in-memory uint8 image set."""

from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

__all__ = [
    "DictDataset",
    "TensorImageDataset",
    "check_image_batch",
    "collate_batch",
    "collate_views",
]


def check_image_batch(image: Any, name: str = "image") -> torch.Tensor:
    """Check that ``image`` is a ``[B, C, H, W]`` uint8 or floating tensor and return it.

    Args:
        image: The value to check.
        name: Field name used in error messages.

    Returns:
        ``image`` unchanged.

    Raises:
        TypeError: if it is not a tensor or has an unsupported dtype.
        ValueError: if it is not 4-D channels-first.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"batch[{name!r}] must be a torch.Tensor [B, C, H, W], got {type(image).__name__}; "
            "use ssl_data.TensorImageDataset or convert images with torchvision's v2.ToImage()."
        )
    if image.ndim != 4:
        hint = "add the channel axis: image.unsqueeze(1)" if image.ndim == 3 else "stack samples"
        raise ValueError(
            f"batch[{name!r}] must be 4-D [B, C, H, W], got shape {tuple(image.shape)}; {hint}."
        )
    if image.shape[1] not in (1, 3) and image.shape[-1] in (1, 3):
        raise ValueError(
            f"batch[{name!r}] has shape {tuple(image.shape)}, which looks channels-last "
            "[B, H, W, C]; channels-first is expected: use image.permute(0, 3, 1, 2)."
        )
    if image.dtype != torch.uint8 and not image.dtype.is_floating_point:
        raise TypeError(
            f"batch[{name!r}] has dtype {image.dtype}; use uint8 (0..255) or a float in [0, 1] "
            "(e.g. image.to(torch.uint8) or image.float() / 255)."
        )
    return image


def _check_uint8_images(images: Any) -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a uint8 torch.Tensor [N, C, H, W], got {type(images).__name__}; "
            "use torch.from_numpy(array)."
        )
    if images.ndim == 3:
        raise ValueError(
            f"images has shape {tuple(images.shape)} (no channel axis); pass "
            "images.unsqueeze(1) for grayscale [N, 1, H, W]."
        )
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D [N, C, H, W], got shape {tuple(images.shape)}.")
    if images.shape[1] not in (1, 3) and images.shape[-1] in (1, 3):
        raise ValueError(
            f"images has shape {tuple(images.shape)}, which looks channels-last [N, H, W, C]; "
            "pass images.permute(0, 3, 1, 2).contiguous()."
        )
    if images.dtype != torch.uint8:
        raise TypeError(
            f"images must have dtype torch.uint8 (0..255), got {images.dtype}; for floats in "
            "[0, 1] use (images * 255).round().to(torch.uint8)."
        )
    if images.shape[0] == 0:
        raise ValueError("images is empty (N = 0); the dataset needs at least one image.")
    return images


class TensorImageDataset(Dataset):
    """In-memory uint8 image dataset yielding dict samples.

    ``dataset[i]`` is ``{"image": uint8 [C, H, W], "label": int64 scalar, "sample_idx": i}``
    (``label`` only when labels are given). ``dataset.__getitems__(indices)`` returns the whole
    batch at once (``image`` ``[B, C, H, W]``, ``label`` ``[B]``, ``sample_idx`` ``[B]``) with one
    ``index_select``, so a ``DataLoader(..., collate_fn=ssl_data.collate_batch)`` does no Python
    work per sample.

    Args:
        images: ``[N, C, H, W]`` uint8 tensor (C = 1 or 3).
        labels: ``[N]`` int64 class labels, or ``None`` for an unlabeled set.
        classes: Class names; when given, labels must lie in ``[0, len(classes))``.
        ignore_index: A label value allowed outside the class range that marks "no label"
            (torchvision's STL-10 uses ``-1``).

    Example:
        >>> ds = TensorImageDataset(torch.zeros(8, 3, 4, 4, dtype=torch.uint8), torch.arange(8) % 2)
        >>> loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_batch)
        >>> next(iter(loader))["image"].shape
        torch.Size([4, 3, 4, 4])
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor | None = None,
        classes: Sequence[str] | None = None,
        ignore_index: int | None = None,
    ) -> None:
        self.images = _check_uint8_images(images)
        self.classes = list(classes) if classes is not None else None
        self.ignore_index = ignore_index
        if labels is not None:
            labels = torch.as_tensor(labels)
            if labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise TypeError(f"labels must be integers, got {labels.dtype}; use labels.long().")
            labels = labels.long()
            if labels.shape != (images.shape[0],):
                raise ValueError(
                    f"labels must have shape [N] = [{images.shape[0]}] to match images, got "
                    f"{tuple(labels.shape)}."
                )
            known = labels if ignore_index is None else labels[labels != ignore_index]
            if known.numel() and int(known.min()) < 0:
                raise ValueError(
                    f"labels contain negative values (min {int(known.min())}); use labels in "
                    "[0, num_classes) or set ignore_index for the 'no label' marker."
                )
            if self.classes is not None and known.numel() and int(known.max()) >= len(self.classes):
                raise ValueError(
                    f"labels go up to {int(known.max())} but only {len(self.classes)} classes "
                    "were given; pass all class names or fix the labels."
                )
        self.labels = labels

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int | None:
        """Number of classes (``len(classes)``, else ``max(label) + 1``; ``None`` if unlabeled)."""
        if self.classes is not None:
            return len(self.classes)
        if self.labels is None:
            return None
        known = (
            self.labels
            if self.ignore_index is None
            else self.labels[self.labels != self.ignore_index]
        )
        return int(known.max()) + 1 if known.numel() else None

    @cached_property
    def _moments(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        total = torch.zeros(self.images.shape[1], dtype=torch.float64)
        total_sq = torch.zeros_like(total)
        for chunk in self.images.split(4096):
            x = chunk.to(torch.float64).div_(255.0)
            total += x.sum(dim=(0, 2, 3))
            total_sq += x.square().sum(dim=(0, 2, 3))
        count = self.images.shape[0] * self.images.shape[2] * self.images.shape[3]
        mean = total / count
        std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
        return tuple(mean.tolist()), tuple(std.tolist())

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean of the pixels in ``[0, 1]`` units (computed once, lazily)."""
        return self._moments[0]

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation of the pixels in ``[0, 1]`` units."""
        return self._moments[1]

    def _index(self, indices: Any) -> torch.Tensor:
        idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
        n = len(self)
        if idx.numel() and (int(idx.min()) < -n or int(idx.max()) >= n):
            raise IndexError(f"index out of range for a dataset of {n} samples")
        return torch.where(idx < 0, idx + n, idx)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        i = int(self._index([index])[0])
        sample = {"image": self.images[i], "sample_idx": torch.tensor(i)}
        if self.labels is not None:
            sample["label"] = self.labels[i]
        return sample

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """Return the samples ``indices`` as one batched dict (used by ``DataLoader``)."""
        idx = self._index(indices)
        batch = {"image": self.images.index_select(0, idx), "sample_idx": idx}
        if self.labels is not None:
            batch["label"] = self.labels.index_select(0, idx)
        return batch


class DictDataset(Dataset):
    """Wrap a map-style dataset so that it yields dict samples with ``sample_idx``.

    Tuple/list samples (torchvision datasets) are zipped with ``names``; a single value is stored
    under ``names[0]``; dict samples are copied. ``sample_idx`` (the index) is added and
    ``transform`` is then applied to the whole dict.

    Args:
        dataset: Any map-style dataset (``__getitem__`` and ``__len__``).
        names: Field names for tuple samples, in order.
        transform: Optional callable ``dict -> dict`` (e.g. ``presets.torchvision_simclr(32)``).

    Example:
        >>> ds = DictDataset([(torch.zeros(3, 2, 2), 1)])
        >>> sorted(ds[0])
        ['image', 'label', 'sample_idx']
    """

    def __init__(
        self,
        dataset: Any,
        names: Sequence[str] = ("image", "label"),
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"DictDataset needs a map-style dataset with __getitem__ and __len__, got "
                f"{type(dataset).__name__}; wrap iterables with list(...) first."
            )
        if len(dataset) == 0:
            raise ValueError("DictDataset: the wrapped dataset is empty; check its root/split.")
        if not names or len(set(names)) != len(names):
            raise ValueError(f"names must be non-empty and unique, got {list(names)}.")
        self.dataset = dataset
        self.names = tuple(names)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        raw = self.dataset[index]
        if isinstance(raw, Mapping):
            sample = dict(raw)
        elif isinstance(raw, tuple | list):
            if len(raw) != len(self.names):
                raise ValueError(
                    f"sample {index} has {len(raw)} fields but names={list(self.names)} has "
                    f"{len(self.names)}; pass names with one entry per field."
                )
            sample = dict(zip(self.names, raw, strict=True))
        else:
            sample = {self.names[0]: raw}
        if "image" not in sample:
            raise KeyError(
                f"sample {index} has no 'image' field (fields: {sorted(sample)}); name the image "
                "field 'image' via names=(...)."
            )
        sample["sample_idx"] = index
        if self.transform is not None:
            sample = self.transform(sample)
        return sample


def collate_batch(samples: Any) -> Any:
    """Collate for ``DataLoader``: pass already-batched dicts through, else ``default_collate``.

    ``TensorImageDataset.__getitems__`` returns a ready batch (a dict); lists of dict samples from
    per-sample datasets are stacked with ``torch.utils.data.default_collate``.
    """
    if isinstance(samples, Mapping):
        return dict(samples)
    if not len(samples):
        raise ValueError("collate_batch: received an empty batch.")
    return default_collate(samples)


def collate_views(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate per-sample multi-view dicts (``image`` is a list of V views) into a flat batch.

    The output follows the flat layout of ``docs/architecture.md``: ``image`` is ``[N*V, C, H, W]``
    view-major (row ``v*N + n``), every other field is repeated ``V`` times and ``view_idx`` says
    which view a row is.

    Args:
        samples: Dicts whose ``image`` is a list/tuple of ``V`` tensors (the output of
            ``presets.torchvision_simclr``), all with the same ``V``.

    Returns:
        The flat batch dict.
    """
    if not samples:
        raise ValueError("collate_views: received an empty batch.")
    views = [s["image"] for s in samples]
    if not all(isinstance(v, list | tuple) for v in views):
        raise TypeError(
            "collate_views expects sample['image'] to be a list of views; use a multi-view "
            "transform such as presets.torchvision_simclr(...), or collate_batch for single views."
        )
    n_views = len(views[0])
    if n_views < 1 or any(len(v) != n_views for v in views):
        raise ValueError("collate_views: every sample must have the same number (>= 1) of views.")
    n = len(samples)
    image = torch.stack([views[i][v] for v in range(n_views) for i in range(n)])
    rest = default_collate([{k: val for k, val in s.items() if k != "image"} for s in samples])
    batch: dict[str, Any] = {"image": image}
    for key, value in rest.items():
        if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == n:
            batch[key] = value.repeat(n_views, *([1] * (value.ndim - 1)))
        elif isinstance(value, list) and len(value) == n:
            batch[key] = value * n_views
        else:
            batch[key] = value
    batch["view_idx"] = torch.arange(n_views).repeat_interleave(n)
    return batch
