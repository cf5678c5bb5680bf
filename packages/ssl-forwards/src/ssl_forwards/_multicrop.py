"""Pieces of the DINO, MoCo v3 and SwAV forwards: EMA wrappers, crop sizes, local views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ssl_data import fold_views
from ssl_forwards._common import require

LOCAL_IMAGE_KEY = "local_image"
"""Batch key of the multi-crop local views (``ssl_data.LOCAL_IMAGE_KEY``)."""
LOCAL_SAMPLE_IDX_KEY = "local_sample_idx"
"""Batch key of the local views' sample ids (``ssl_data.LOCAL_SAMPLE_IDX_KEY``)."""


def require_wrapper(self: Any, name: str, forward_name: str, example: str) -> Any:
    """Return the attribute ``name``, which must be an ``ssl_core.TeacherStudentWrapper``.

    Raises:
        AttributeError: The module has no attribute ``name``.
        TypeError: The attribute is not a teacher/student wrapper.
    """
    wrapper = require(self, name, forward_name, f"ssl_core.TeacherStudentWrapper({example})")
    if not (hasattr(wrapper, "forward_student") and hasattr(wrapper, "forward_teacher")):
        raise TypeError(
            f"{forward_name} needs {name!r} to be an ssl_core.TeacherStudentWrapper (its EMA "
            f"teacher gives the targets), got {type(wrapper).__name__}; wrap it: "
            f"ssl_core.Module(forward={forward_name}, {name}=ssl_core.TeacherStudentWrapper("
            f"{example}), ...) and add ssl_callbacks.TeacherStudentCallback() to the trainer's "
            "callbacks."
        )
    return wrapper


def student_of(network: Any) -> Any:
    """The network that trains: the student of a teacher/student wrapper, else ``network``."""
    return getattr(network, "student", network)


def check_crop_size(network: Any, image: torch.Tensor, key: str, forward_name: str) -> None:
    """Fail early, naming the batch key, when a ViT backbone cannot take the crop size.

    Raises:
        ValueError: ``network`` has a ``patch_grid`` (a ViT) that rejects the image size.
    """
    patch_grid = getattr(student_of(network), "patch_grid", None)
    if patch_grid is None or not isinstance(image, torch.Tensor) or image.ndim != 4:
        return
    try:
        patch_grid(int(image.shape[-2]), int(image.shape[-1]))
    except ValueError as err:
        raise ValueError(
            f"{forward_name}: batch[{key!r}] holds {image.shape[-2]}x{image.shape[-1]} crops, "
            f"which the ViT backbone cannot take: {err} Set the multi-crop recipe's "
            f"{'local' if key == LOCAL_IMAGE_KEY else 'global'} crop size accordingly."
        ) from None


def local_views(
    batch: Mapping[str, Any], forward_name: str, n_samples: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Return ``(local_image, local_sample_idx)`` when the batch has multi-crop local views.

    Args:
        batch: The training batch.
        forward_name: Name of the calling forward, for error messages.
        n_samples: Samples ``N`` of the global views, which the local views must match.

    Returns:
        ``None`` when the batch has no ``local_image``.

    Raises:
        KeyError: ``local_image`` without ``local_sample_idx``.
        ValueError: The local views are not ``Vl`` views of the same ``N`` samples.
    """
    if LOCAL_IMAGE_KEY not in batch:
        return None
    if LOCAL_SAMPLE_IDX_KEY not in batch:
        raise KeyError(
            f"{forward_name}: the batch has {LOCAL_IMAGE_KEY!r} but no {LOCAL_SAMPLE_IDX_KEY!r}; "
            "the multi-crop recipe must write one sample id per local view row."
        )
    image, sample_idx = batch[LOCAL_IMAGE_KEY], batch[LOCAL_SAMPLE_IDX_KEY]
    if image.shape[0] % n_samples or image.shape[0] != sample_idx.shape[0]:
        raise ValueError(
            f"{forward_name}: batch[{LOCAL_IMAGE_KEY!r}] has {image.shape[0]} rows and "
            f"{LOCAL_SAMPLE_IDX_KEY!r} {sample_idx.shape[0]}, but the global views hold "
            f"{n_samples} samples; local views must be Vl views of the same samples "
            f"([{n_samples}*Vl] rows)."
        )
    return image, sample_idx


def fold_local(
    tensor: torch.Tensor, sample_idx: torch.Tensor, n_samples: int, forward_name: str
) -> list[torch.Tensor]:
    """Fold local-view rows into ``Vl`` tensors ``[N, ...]`` in the global views' sample order.

    Raises:
        ValueError: The local views do not hold the same number of samples as the global ones.
    """
    views = fold_views(tensor, sample_idx)
    if views[0].shape[0] != n_samples:
        raise ValueError(
            f"{forward_name}: the local views hold {views[0].shape[0]} samples but the global "
            f"views {n_samples}; give every sample of the batch the same local views."
        )
    return views


def current(self: Any, name: str) -> int:
    """``self.current_epoch`` or ``self.global_step`` (0 outside a trainer)."""
    try:
        return int(getattr(self, name, 0) or 0)
    except RuntimeError:  # a LightningModule not attached to a trainer
        return 0


def head_call(call: Any, head: Any, features: torch.Tensor, epoch: int) -> torch.Tensor:
    """Run ``call(features)``, passing ``epoch=`` when ``head`` takes one (``DINOHead``).

    Args:
        call: The bound method to run (``projector.forward_student``).
        head: The head (or its teacher/student wrapper) to inspect.
        features: The head's input.
        epoch: The current epoch.
    """
    if hasattr(student_of(head), "last_layer_frozen"):
        return call(features, epoch=epoch)
    return call(features)


def optional_hparam(self: Any, name: str, default: Any) -> Any:
    """``self.hparams[name]`` (or ``self.<name>``) when set, else ``default``."""
    hparams = getattr(self, "hparams", None)
    value = None
    if isinstance(hparams, Mapping):
        value = hparams.get(name)
    elif hparams is not None:
        value = getattr(hparams, name, None)
    if value is None:
        value = getattr(self, name, None)
    return default if value is None else value
