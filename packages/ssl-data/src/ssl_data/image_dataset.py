"""A lazily decoded image dataset whose batches leave the worker as fixed-size uint8 views."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ssl_data.crops import CropSpec, center_view, convert_channels, random_view, sample_generator
from ssl_data.files import FileList

__all__ = [
    "LOCAL_IMAGE_KEY",
    "LOCAL_SAMPLE_IDX_KEY",
    "NOTES_KEY",
    "CorruptImageError",
    "ImageFileDataset",
]

LOCAL_IMAGE_KEY = "local_image"
"""Batch key of the local (small) multi-crop views ``[N*Vl, C, Hl, Wl]``."""
LOCAL_SAMPLE_IDX_KEY = "local_sample_idx"
"""Batch key of the ``sample_idx`` of the local views ``[N*Vl]``."""
NOTES_KEY = "_data_notes"
"""Batch key of what the workers noticed (skipped files, conversions); the DataModule pops it."""
_MAX_SKIPS = 16


class CorruptImageError(RuntimeError):
    """An image file could not be decoded; the message names the file and the skip option."""


def _decode(path: str) -> torch.Tensor:
    from torchvision.io import decode_image, read_file

    with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec; the API still works
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_image(read_file(path))


def _new_notes() -> dict[str, Any]:
    return {"skipped": [], "converted": 0, "upscaled": 0, "smallest": None}


class ImageFileDataset(Dataset):
    """Images decoded on demand (``torchvision.io.decode_image``) and cropped in the worker.

    ``dataset[i]`` is ``{"image": uint8 [C, H, W] (as decoded, converted to ``channels``),
    "label", "sample_idx"}``. ``dataset.__getitems__(items)`` returns a whole batch of views:
    with ``crops`` (groups of :class:`~ssl_data.crops.CropSpec`, one spec per view), group 0 is
    ``image`` ``[N*V0, C, s0, s0]`` view-major with ``sample_idx``/``label``/``view_idx``
    repeated, group 1 (multi-crop local views) is ``local_image``/``local_sample_idx``; without
    ``crops`` every image is resized and centre-cropped to ``eval_size`` (one row per sample).
    ``items`` are indices or ``(index, epoch)`` pairs (what :class:`~ssl_data.loader.ShardSampler`
    yields): the crops of a sample depend only on ``(seed, epoch, index)``, not on the worker.

    Memory: only the path list (and labels) is held; each batch decodes its own files.

    Args:
        files: The image paths (and optional labels/classes).
        channels: Output channels (1 or 3); gray and RGB files are converted (said once).
        crops: View groups for training, or ``None`` for evaluation views.
        eval_size: Side length of evaluation views (required without ``crops``).
        seed: Base seed of the crops.
        skip_bad_files: Replace an unreadable file by the next readable one in the list (each
            is reported in the batch notes) instead of raising :class:`CorruptImageError`.
    """

    def __init__(
        self,
        files: FileList,
        channels: int = 3,
        crops: Sequence[Sequence[CropSpec]] | None = None,
        eval_size: int | None = None,
        seed: int = 0,
        skip_bad_files: bool = False,
    ) -> None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}.")
        if len(files) == 0:
            raise ValueError("ImageFileDataset: the file list is empty.")
        self.files = files
        self.channels = channels
        self.seed = int(seed)
        self.skip_bad_files = skip_bad_files
        self.eval_size = eval_size
        self.crops: list[list[CropSpec]] | None = None
        self.set_views(crops, eval_size)

    def set_views(
        self, crops: Sequence[Sequence[CropSpec]] | None, eval_size: int | None = None
    ) -> None:
        """Set the view groups (training) or the evaluation size."""
        if crops is not None and (not crops or any(not g for g in crops) or len(crops) > 2):
            raise ValueError("crops must hold one or two non-empty groups of CropSpec.")
        if crops is None and eval_size is None and self.eval_size is None:
            raise ValueError("ImageFileDataset needs crops (training views) or eval_size.")
        self.crops = [list(g) for g in crops] if crops is not None else None
        if eval_size is not None:
            self.eval_size = int(eval_size)

    @property
    def classes(self) -> list[str] | None:
        """Class names, when the file list has them."""
        return list(self.files.classes) if self.files.classes is not None else None

    @property
    def num_classes(self) -> int | None:
        """Number of classes (``None`` if unlabeled)."""
        if self.files.classes is not None:
            return len(self.files.classes)
        return max(self.files.labels) + 1 if self.files.labels else None

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        """Decode sample ``index`` to a uint8 ``[C, H, W]`` tensor (any channel count)."""
        return _decode(self.files.paths[index])

    def describe(self, index: int) -> str:
        """Where sample ``index`` comes from (its path), for messages."""
        return self.files.paths[index]

    def _read(self, index: int, notes: dict[str, Any]) -> tuple[int, torch.Tensor]:
        for attempt in range(_MAX_SKIPS + 1):
            i = (index + attempt) % len(self)
            try:
                image = self.load(i)
            except Exception as err:
                where = self.describe(i)
                if not self.skip_bad_files:
                    raise CorruptImageError(
                        f"cannot decode image {where} ({type(err).__name__}: {err}). Fix or "
                        "remove the file, or skip unreadable images with skip_bad_files=True "
                        "(data.skip_bad_files=true in the app; each skipped file is logged and "
                        "counted)."
                    ) from None
                notes["skipped"].append(f"{where} ({type(err).__name__}: {err})")
                continue
            image, converted = convert_channels(image, self.channels)
            notes["converted"] += int(converted)
            return i, image
        raise CorruptImageError(
            f"{_MAX_SKIPS + 1} consecutive unreadable images from {self.describe(index)} on; "
            "check the folder (is it images at all?)."
        )

    def _label(self, index: int) -> int | None:
        return None if self.files.labels is None else self.files.labels[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        i, image = self._read(int(index), _new_notes())
        sample: dict[str, Any] = {"image": image, "sample_idx": int(index)}
        if (label := self._label(i)) is not None:
            sample["label"] = label
        return sample

    def __getitems__(self, items: Sequence[Any]) -> dict[str, Any]:
        """Decode and crop a batch (see the class docstring)."""
        notes = _new_notes()
        pairs = [
            (int(x[0]), int(x[1])) if isinstance(x, tuple | list) else (int(x), 0) for x in items
        ]
        groups: list[list[list[torch.Tensor]]] = [
            [[] for _ in g]
            for g in (self.crops or [[None]])  # type: ignore[list-item]
        ]
        labels: list[int] = []
        max_size = max((s.size for g in self.crops for s in g), default=0) if self.crops else 0
        for index, epoch in pairs:
            i, image = self._read(index, notes)
            if (label := self._label(i)) is not None:
                labels.append(label)
            side = min(image.shape[-2:])
            if side < (max_size or self.eval_size or 0):
                notes["upscaled"] += 1
                notes["smallest"] = min(side, notes["smallest"] or side)
            if self.crops is None:
                groups[0][0].append(center_view(image, int(self.eval_size)))  # type: ignore[arg-type]
                continue
            g = sample_generator(self.seed, epoch, index)
            for group, specs in zip(groups, self.crops, strict=True):
                for views, spec in zip(group, specs, strict=True):
                    views.append(random_view(image, spec, g))
        idx = torch.tensor([p[0] for p in pairs], dtype=torch.long)
        n_global = len(groups[0])
        batch: dict[str, Any] = {
            "image": torch.stack([v for views in groups[0] for v in views]),
            "sample_idx": idx.repeat(n_global),
        }
        if labels:
            batch["label"] = torch.tensor(labels, dtype=torch.long).repeat(n_global)
        if self.crops is not None:
            batch["view_idx"] = torch.arange(n_global).repeat_interleave(len(pairs))
        if len(groups) == 2:
            batch[LOCAL_IMAGE_KEY] = torch.stack([v for views in groups[1] for v in views])
            batch[LOCAL_SAMPLE_IDX_KEY] = idx.repeat(len(groups[1]))
        batch[NOTES_KEY] = notes
        return batch
