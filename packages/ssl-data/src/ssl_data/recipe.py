"""View recipes owned by the data: global views plus optional multi-crop local views.

A recipe is one or two :class:`~ssl_data.augment.MultiViewAugment` groups whose per-view
pipelines start with a :class:`~ssl_data.augment.RandomResizedCrop`. Two ways to apply it:

* in-memory batches (whole images, all the same size): the full pipelines run batched on the
  batch's device (``recipe(batch)``);
* file batches, already cropped in the workers (:meth:`ViewRecipe.crop_specs` tells the
  workers each view's crop): only the photometric rest runs on the device
  (``recipe(batch, precropped=True)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ssl_data.augment import Compose, MultiViewAugment, RandomResizedCrop
from ssl_data.augment._base import apply_transform
from ssl_data.crops import CropSpec
from ssl_data.image_dataset import LOCAL_IMAGE_KEY, LOCAL_SAMPLE_IDX_KEY
from ssl_data.presets import IMAGENET_MEAN, IMAGENET_STD, simclr_pipeline

__all__ = ["ViewRecipe", "as_recipe", "multicrop_views"]


def _split_crop(pipeline: Any, where: str) -> tuple[CropSpec, Compose]:
    ops = getattr(pipeline, "transforms", None)
    if not ops or not isinstance(ops[0], RandomResizedCrop):
        raise ValueError(
            f"{where}: a view pipeline must be a Compose starting with RandomResizedCrop so the "
            f"crop can run in the data workers; got {pipeline!r}."
        )
    rrc = ops[0]
    if rrc.size[0] != rrc.size[1]:
        raise ValueError(f"{where}: views must be square, got size {rrc.size}.")
    spec = CropSpec(rrc.size[0], rrc.scale, rrc.ratio, rrc.hflip_p)
    return spec, Compose(ops[1:], fused=False)  # the fused kernel needs the crop first


class ViewRecipe:
    """Global views and optional local (multi-crop) views of each sample.

    Output of a training batch of N samples: ``image`` ``[N*Vg, C, Hg, Wg]`` with ``sample_idx``
    (and every other per-row field) repeated ``Vg`` times and ``view_idx``; with local views
    also ``local_image`` ``[N*Vl, C, Hl, Wl]`` and ``local_sample_idx`` ``[N*Vl]``. Both are
    view-major; regroup each with ``fold_views(batch["local_image"],
    batch["local_sample_idx"])`` (same sample order as the global group).

    Args:
        global_views: The global group (a :class:`MultiViewAugment`, e.g. ``simclr_views``).
        local_views: The local group, or ``None``.
    """

    def __init__(
        self, global_views: MultiViewAugment, local_views: MultiViewAugment | None = None
    ) -> None:
        for name, group in (("global_views", global_views), ("local_views", local_views)):
            if group is not None and not isinstance(group, MultiViewAugment):
                raise TypeError(
                    f"{name} must be a MultiViewAugment (e.g. ssl_data.presets.simclr_views), "
                    f"got {type(group).__name__}."
                )
        self.global_views = global_views
        self.local_views = local_views

    @property
    def groups(self) -> list[MultiViewAugment]:
        """The view groups (global first)."""
        return [g for g in (self.global_views, self.local_views) if g is not None]

    def crop_specs(self) -> list[list[CropSpec]]:
        """Each group's per-view crops, for the workers."""
        return [
            [_split_crop(v, f"views group {i} view {j}")[0] for j, v in enumerate(g.views)]
            for i, g in enumerate(self.groups)
        ]

    def _photometric(self, group: MultiViewAugment, image: torch.Tensor) -> torch.Tensor:
        n_views = group.n_views
        if image.shape[0] % n_views:
            raise ValueError(
                f"{image.shape[0]} pre-cropped rows are not a multiple of {n_views} views."
            )
        g = group.generator(image.device)
        rests = [_split_crop(v, "views")[1] for v in group.views]
        rows = image.chunk(n_views)
        return torch.cat(
            [apply_transform(r, {"image": x}, g)["image"] for r, x in zip(rests, rows, strict=True)]
        )

    def __call__(self, batch: dict[str, Any], precropped: bool = False) -> dict[str, Any]:
        """Apply the recipe on the batch's device (see the class docstring)."""
        if precropped:
            out = dict(batch)
            out["image"] = self._photometric(self.global_views, batch["image"])
            if self.local_views is not None:
                if LOCAL_IMAGE_KEY not in batch:
                    raise KeyError(
                        f"the recipe has local views but the batch has no {LOCAL_IMAGE_KEY!r}; "
                        "the dataset's crops were not set from this recipe."
                    )
                out[LOCAL_IMAGE_KEY] = self._photometric(self.local_views, batch[LOCAL_IMAGE_KEY])
            return out
        out = self.global_views(batch)
        if self.local_views is not None:
            keep = {k: batch[k] for k in ("image", "sample_idx") if k in batch}
            local = self.local_views(keep)
            out[LOCAL_IMAGE_KEY] = local["image"]
            out[LOCAL_SAMPLE_IDX_KEY] = local["sample_idx"]
        return out

    def state_dict(self) -> dict[str, Any]:
        """The random streams of the groups."""
        return {"groups": [g.state_dict() for g in self.groups]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        for group, s in zip(self.groups, state["groups"], strict=True):
            group.load_state_dict(s)

    def __repr__(self) -> str:
        return f"ViewRecipe(global_views={self.global_views!r}, local_views={self.local_views!r})"


def as_recipe(views: Any) -> ViewRecipe | None:
    """Wrap a :class:`MultiViewAugment` (or pass a :class:`ViewRecipe` / ``None``) through."""
    if views is None or isinstance(views, ViewRecipe):
        return views
    if isinstance(views, Mapping) and not views:  # data/views=none composes to {}
        return None
    if isinstance(views, MultiViewAugment):
        return ViewRecipe(views)
    raise TypeError(
        "views must be a ViewRecipe or a MultiViewAugment (ssl_data.presets.simclr_views, "
        f"byol_views, vicreg_views, multicrop_views), got {type(views).__name__}."
    )


def multicrop_views(
    global_size: int,
    local_size: int,
    n_local: int = 6,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    global_scale: tuple[float, float] = (0.4, 1.0),
    local_scale: tuple[float, float] = (0.05, 0.4),
    blur: bool | None = None,
    seed: int = 0,
) -> ViewRecipe:
    """DINO's multi-crop (Caron et al., 2021): 2 global views and ``n_local`` local views.

    Both groups: crop, flip, colour jitter ``(0.4, 0.4, 0.2, 0.1)`` p=0.8, grayscale p=0.2.
    Global view 0: blur p=1.0; global view 1: blur p=0.1 and solarize p=0.2; local views: blur
    p=0.5. Blur is used above 64 px unless ``blur`` says otherwise. Sizes: 224/96 on ImageNet;
    32/16 or 28/12 on small images.

    Example:
        >>> recipe = multicrop_views(28, 12, n_local=2, mean=(0.5,), std=(0.5,))
        >>> out = recipe({"image": torch.zeros(4, 1, 28, 28, dtype=torch.uint8)})
        >>> out["image"].shape, out["local_image"].shape, out["local_sample_idx"].tolist()
        (torch.Size([8, 1, 28, 28]), torch.Size([8, 1, 12, 12]), [0, 1, 2, 3, 0, 1, 2, 3])
    """
    if n_local < 0:
        raise ValueError(f"n_local must be >= 0, got {n_local}.")
    jitter = (0.4, 0.4, 0.2, 0.1)
    use_blur = global_size > 64 if blur is None else blur

    def pipe(size: int, blur_p: float, sol_p: float, scale: tuple[float, float]) -> Compose:
        bp = blur_p if use_blur else 0.0
        return simclr_pipeline(
            size, mean, std, scale=scale, jitter=jitter, blur_p=bp, solarize_p=sol_p
        )

    global_group = MultiViewAugment(
        [pipe(global_size, 1.0, 0.0, global_scale), pipe(global_size, 0.1, 0.2, global_scale)],
        seed=seed,
    )
    local_group = None
    if n_local:
        local_pipe = pipe(local_size, 0.5, 0.0, local_scale)
        local_group = MultiViewAugment((local_pipe, n_local), seed=seed + 1)
    return ViewRecipe(global_group, local_group)
