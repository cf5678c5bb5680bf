"""Extract features of a dataset once, in batches, with the evaluation transform."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["extract_features", "resolve_device"]


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; other values go to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=True,
    )


def extract_features(
    model: nn.Module | None,
    dataset: Any,
    *,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    progress: bool = True,
    description: str = "features",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` over ``dataset`` under ``torch.inference_mode`` and return its features.

    Images go through :func:`ssl_data.presets.eval_transform` (resize, normalise with the
    dataset's ``mean``/``std``) on ``device``, ``batch_size`` at a time.

    Args:
        model: A backbone mapping ``[B, C, H, W]`` to ``[B, D]`` (set to eval mode here), or
            ``None`` for raw pixels: the flattened normalised images.
        dataset: A map-style dict dataset with ``image`` and ``label`` (``ssl_data`` datasets).
        image_size: Side length the images are resized to.
        mean: Per-channel normalisation mean (``[0, 1]`` units).
        std: Per-channel normalisation std.
        batch_size: Images per forward pass.
        device: Where the transform and the model run (``"auto"``: CUDA when available).
        limit: Use only the first ``limit`` samples.
        progress: Show a rich progress bar.
        description: The progress bar's label.

    Returns:
        ``(features [N, D] float32, labels [N] int64)``, both on CPU.

    Raises:
        ValueError: The dataset has no labels.
    """
    from ssl_data.loader import make_loader
    from ssl_data.presets import eval_transform

    dev = resolve_device(device)
    transform = eval_transform(int(image_size), mean, std)
    loader = make_loader(dataset, batch_size, limit=limit)  # workers decode files, if any
    if model is not None:
        model = model.to(dev).eval()
    feats: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    with _progress(progress) as bar, torch.inference_mode():
        task = bar.add_task(description, total=len(loader))
        for batch in loader:
            if "label" not in batch:
                raise ValueError(
                    "the dataset has no labels; kNN and the linear probe need a labelled train "
                    "and test split (use a labelled dataset, e.g. data=fashion_mnist)."
                )
            image = transform({"image": batch["image"].to(dev, non_blocking=True)})["image"]
            out = image.flatten(1) if model is None else model(image)
            feats.append(out.float().flatten(1).cpu())
            labels.append(batch["label"].long().cpu())
            bar.advance(task)
    return torch.cat(feats), torch.cat(labels)
