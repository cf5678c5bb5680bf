"""Expansion of N images into N*V independently augmented views (flat, view-major)."""

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from ssl_data.augment._base import Batch, apply_transform
from ssl_data.dict_dataset import check_image_batch

__all__ = ["MultiViewAugment", "repeat_rows"]


def repeat_rows(batch: Batch, n_rows: int, times: int) -> Batch:
    """Repeat every per-row field of ``batch`` ``times`` times along the rows (view-major).

    A tensor whose first dimension is ``n_rows`` and a list/tuple of length ``n_rows`` are
    per-row fields; everything else is copied unchanged.
    """
    out: Batch = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == n_rows:
            out[key] = value.repeat(times, *([1] * (value.ndim - 1)))
        elif isinstance(value, list | tuple) and len(value) == n_rows:
            out[key] = list(value) * times
        else:
            out[key] = value
    return out


class MultiViewAugment:
    """Turn a batch of N images into a flat batch of N*V augmented views.

    Output rows are view-major (row ``v*N + n`` is view ``v`` of sample ``n``); every other per-row
    field (``label``, ``sample_idx``, ...) is repeated, ``view_idx`` is written and the incoming
    ``sample_idx`` is kept (``arange(N)`` when absent). Each view's pipeline draws independent
    random parameters per image from this object's own ``torch.Generator``, created lazily on the
    batch's device and seeded with ``seed`` (plus the distributed rank, so ranks differ). The
    stream is saved and restored with :meth:`state_dict` / :meth:`load_state_dict`.

    When every view uses the same pipeline object, all N*V rows go through it in one call.

    Args:
        views: A list of per-view pipelines ``[pipeline_v0, pipeline_v1, ...]`` (for asymmetric
            recipes such as BYOL's) or a pair ``(pipeline, n_views)``. Pipelines are ssl_data
            transforms/``Compose`` or any callable ``batch -> batch``.
        seed: Seed of the generator.

    Example:
        >>> from ssl_data.augment import Compose, RandomResizedCrop, Normalize
        >>> aug = MultiViewAugment((Compose([RandomResizedCrop(8), Normalize((0.5,), (0.5,))]), 2))
        >>> out = aug({"image": torch.zeros(4, 1, 8, 8, dtype=torch.uint8)})
        >>> out["image"].shape, out["sample_idx"].tolist()
        (torch.Size([8, 1, 8, 8]), [0, 1, 2, 3, 0, 1, 2, 3])
    """

    def __init__(
        self,
        views: Sequence[Callable[..., Batch]] | tuple[Callable[..., Batch], int],
        seed: int = 0,
    ) -> None:
        if (
            isinstance(views, tuple)
            and len(views) == 2
            and callable(views[0])
            and isinstance(views[1], int)
        ):
            pipeline, n_views = views
            if n_views < 1:
                raise ValueError(f"n_views must be >= 1, got {n_views}.")
            self.views: list[Callable[..., Batch]] = [pipeline] * n_views
        else:
            self.views = list(views)
            if not self.views:
                raise ValueError(
                    "MultiViewAugment needs at least one view: pass [pipeline, ...] or "
                    "(pipeline, n_views) with n_views >= 1."
                )
        for v in self.views:
            if not callable(v):
                raise TypeError(f"view pipeline {v!r} is not callable (batch -> batch).")
        self.seed = int(seed)
        self._generator: torch.Generator | None = None
        self._pending_state: dict[str, Any] | None = None

    @property
    def n_views(self) -> int:
        """Number of views V."""
        return len(self.views)

    def generator(self, device: torch.device) -> torch.Generator:
        """The generator on ``device`` (created and seeded, or restored, on first use)."""
        device = torch.device(device)
        if self._generator is not None and self._generator.device.type == device.type:
            return self._generator
        g = torch.Generator(device=device)
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        g.manual_seed(self.seed + rank)
        pending = self._pending_state
        if pending is not None:
            if pending["device_type"] == device.type:
                g.set_state(pending["rng_state"])
            else:
                warnings.warn(
                    f"MultiViewAugment: the saved random state is for {pending['device_type']} "
                    f"but the batch is on {device.type}; starting a fresh stream from seed "
                    f"{self.seed}. Resume on the same device type to continue the stream.",
                    stacklevel=2,
                )
            self._pending_state = None
        self._generator = g
        return g

    def state_dict(self) -> dict[str, Any]:
        """Seed and generator state (``rng_state`` is ``None`` before the first batch)."""
        if self._generator is None:
            if self._pending_state is not None:
                return {"seed": self.seed, **self._pending_state}
            return {"seed": self.seed, "device_type": None, "rng_state": None}
        return {
            "seed": self.seed,
            "device_type": self._generator.device.type,
            "rng_state": self._generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the random stream continues where it was saved."""
        self.seed = int(state["seed"])
        self._generator = None
        self._pending_state = None
        if state.get("rng_state") is not None:
            self._pending_state = {
                "device_type": state["device_type"],
                "rng_state": state["rng_state"].clone(),
            }

    def __call__(self, batch: Batch) -> Batch:
        """Augment ``batch`` into ``N * n_views`` rows."""
        if "image" not in batch:
            raise KeyError(
                f"batch has no 'image' field (fields: {sorted(batch)}); MultiViewAugment reads "
                "batch['image'] [N, C, H, W]."
            )
        image = check_image_batch(batch["image"])
        n = image.shape[0]
        device = image.device
        g = self.generator(device)
        base = dict(batch)
        if "sample_idx" not in base:
            base["sample_idx"] = torch.arange(n, device=device)
        base.pop("view_idx", None)
        v_count = self.n_views
        if all(v is self.views[0] for v in self.views):
            out = apply_transform(self.views[0], repeat_rows(base, n, v_count), g)
        else:
            images = [apply_transform(v, dict(base), g)["image"] for v in self.views]
            out = repeat_rows(base, n, v_count)
            out["image"] = torch.cat(images)
        out["view_idx"] = torch.arange(v_count, device=device).repeat_interleave(n)
        return out

    def __repr__(self) -> str:
        return f"MultiViewAugment(n_views={self.n_views}, seed={self.seed}, views={self.views!r})"
