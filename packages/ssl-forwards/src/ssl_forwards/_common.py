"""Pieces every forward shares: attribute checks, stage checks, view folding, label pass-through.

Each ready forward is a plain function ``f(self, batch, stage) -> dict`` bound by
``ssl_core.Module``. The helpers here keep the six forwards short and make their error messages
uniform: every error names what is wrong and how to fix it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ssl_data import fold_views

STAGES = ("train", "val", "test", "predict")


def check_stage(stage: str, forward_name: str) -> bool:
    """Validate ``stage`` and return whether it is the training stage.

    Args:
        stage: One of ``"train"``, ``"val"``, ``"test"``, ``"predict"``.
        forward_name: Name of the calling forward, for the error message.

    Returns:
        ``True`` when ``stage == "train"`` (the only stage that computes a loss).

    Raises:
        ValueError: ``stage`` is not one of the four stages.
    """
    if stage not in STAGES:
        raise ValueError(
            f"{forward_name} got stage={stage!r}; call it with one of {STAGES} "
            '(ssl_core.Module does so: self(batch, "train")).'
        )
    return stage == "train"


def require(self: Any, name: str, forward_name: str, example: str) -> Any:
    """Return the module attribute ``name`` or raise an error naming how to provide it.

    Args:
        self: The bound module.
        name: Attribute name, e.g. ``"simclr_loss"``.
        forward_name: Name of the calling forward, for the error message.
        example: A constructor expression to suggest, e.g. ``"ssl_losses.NTXEntLoss(0.5)"``.

    Returns:
        The attribute.

    Raises:
        AttributeError: The module has no attribute ``name`` (or it is ``None``).
    """
    value = getattr(self, name, None)
    if value is None:
        raise AttributeError(
            f"{forward_name} needs the module attribute {name!r}; pass it when building the "
            f"module: ssl_core.Module(forward={forward_name}, {name}={example}, ...)."
        )
    return value


def require_hparam(self: Any, name: str, forward_name: str, example: str) -> Any:
    """Return ``self.hparams.<name>`` (or, failing that, ``self.<name>``) or raise naming the fix.

    Args:
        self: The bound module.
        name: Hyper-parameter name, e.g. ``"support_set_size"``.
        forward_name: Name of the calling forward, for the error message.
        example: An example value to suggest.

    Returns:
        The hyper-parameter's value.

    Raises:
        AttributeError: Neither ``self.hparams`` nor the module holds ``name``.
    """
    hparams = getattr(self, "hparams", None)
    value = None
    if isinstance(hparams, Mapping):
        value = hparams.get(name)
    elif hparams is not None:
        value = getattr(hparams, name, None)
    if value is None:
        value = getattr(self, name, None)
    if value is None:
        raise AttributeError(
            f"{forward_name} needs the hyper-parameter {name!r}; pass it when building the "
            f"module: ssl_core.Module(forward={forward_name}, hparams={{{name!r}: {example}, "
            "...}, ...)."
        )
    return value


def require_image(batch: Mapping[str, Any], forward_name: str) -> torch.Tensor:
    """Return ``batch["image"]`` or raise naming the expected batch layout."""
    if "image" not in batch:
        raise KeyError(
            f"{forward_name} reads the input from batch['image'] but the batch has keys "
            f"{sorted(batch)}; make the dataset (or a batch transform) write the input under "
            "'image'."
        )
    return batch["image"]


def base_outputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Start the outputs dict, passing ``label`` through when the batch has one."""
    out: dict[str, Any] = {}
    if "label" in batch:
        out["label"] = batch["label"]
    return out


def fold_training_views(
    tensors: list[torch.Tensor],
    batch: Mapping[str, Any],
    forward_name: str,
    *,
    exact_views: int | None = None,
    min_views: int | None = None,
    module: Any = None,
) -> list[list[torch.Tensor]]:
    """Fold flat ``[N*V, ...]`` tensors into per-view ``[N, ...]`` tensors by ``sample_idx``.

    Args:
        tensors: Tensors whose rows follow the rows of ``batch``.
        batch: The training batch; must hold ``sample_idx``.
        forward_name: Name of the calling forward, for error messages.
        exact_views: The number of views per sample the method needs, if fixed.
        min_views: The smallest number of views per sample the method can use.
        module: The bound module; with an ``ssl_core.Module`` the fold reads no device value
            after the first batch of each size (see ``_fold``).

    Returns:
        One list of ``V`` tensors per input tensor (same order as ``tensors``); samples are
        ordered by ascending ``sample_idx`` and views by order of appearance
        (see ``ssl_data.fold_views``).

    Raises:
        KeyError: The batch has no ``sample_idx``.
        ValueError: The number of views per sample does not suit the method.
    """
    if "sample_idx" not in batch:
        raise KeyError(
            f"{forward_name} needs batch['sample_idx'] in training to pair the views of each "
            "sample (rows with equal sample_idx are views of one sample); use a dataset that "
            "yields 'sample_idx' and a multi-view augmentation such as "
            "ssl_data.MultiViewAugment as the module's batch_transforms."
        )
    sample_idx = batch["sample_idx"]
    folded = _fold(module, tensors, sample_idx, forward_name)
    n_views = len(folded[0])
    if exact_views is not None and n_views != exact_views:
        raise ValueError(
            f"{forward_name} needs exactly {exact_views} views per sample in training, got "
            f"{n_views}; configure the multi-view augmentation to produce {exact_views} views "
            "(e.g. ssl_data.MultiViewAugment with two view recipes)."
        )
    if min_views is not None and n_views < min_views:
        raise ValueError(
            f"{forward_name} needs at least {min_views} views per sample in training, got "
            f"{n_views}; configure the multi-view augmentation to produce {min_views} or more "
            "views per sample (rows with equal sample_idx)."
        )
    return folded


_LAYOUT_ATTRIBUTE = "_ssl_forwards_views_per_rows"


def _fold(
    module: Any, tensors: list[torch.Tensor], sample_idx: torch.Tensor, forward_name: str
) -> list[list[torch.Tensor]]:
    """``ssl_data.fold_views`` of each tensor, without reading the device in steady state.

    Counting the views per sample needs a host read, so the count is learnt once per batch
    size (``ssl_data.fold_views`` checks that batch) and remembered on the module; later
    batches of that size are folded by one stable sort, and their layout (every sample has
    that many views) is checked on the device with ``module.defer_check`` (ssl_core.Module),
    read at its next check point.
    """
    rows = int(sample_idx.shape[0])
    known: dict[int, int] | None = None
    if module is not None:
        known = vars(module).setdefault(_LAYOUT_ATTRIBUTE, {})
    n_views = known.get(rows) if known is not None else None
    defer = getattr(module, "defer_check", None)
    if n_views is None or defer is None or sample_idx.ndim != 1 or rows % n_views:
        folded = [fold_views(t, sample_idx) for t in tensors]
        if known is not None:
            known[rows] = len(folded[0])
        return folded
    if any(t.shape[0] != rows for t in tensors):
        return [fold_views(t, sample_idx) for t in tensors]  # fold_views raises naming the fix
    sorted_idx, order = torch.sort(sample_idx, stable=True)
    grid = sorted_idx.view(rows // n_views, n_views)
    bad = (grid != grid[:, :1]).any() | (grid[1:, 0] <= grid[:-1, 0]).any()
    defer(
        bad,
        f"{forward_name}: samples stopped having {n_views} views each (earlier batches of "
        f"{rows} rows had); keep each sample's views in one batch and the number of views "
        "fixed (ssl_data.MultiViewAugment and RepeatedRandomSampler do)",
    )
    gather = order.view(rows // n_views, n_views).t().reshape(-1)
    return [
        list(t.index_select(0, gather.to(t.device)).view(n_views, -1, *t.shape[1:]).unbind(0))
        for t in tensors
    ]


def mean_over_view_pairs(
    loss_fn: Any, views: list[torch.Tensor], forward_name: str, loss_name: str
) -> torch.Tensor:
    """Average ``loss_fn(views[i], views[j])`` over all unordered view pairs ``i < j``.

    With two views this is just ``loss_fn(views[0], views[1])``.
    """
    losses = [
        as_scalar(loss_fn(views[i], views[j]), forward_name, loss_name)
        for i in range(len(views))
        for j in range(i + 1, len(views))
    ]
    return torch.stack(losses).mean()


def as_scalar(value: Any, forward_name: str, loss_name: str) -> torch.Tensor:
    """Check that a loss returned a scalar tensor.

    Raises:
        TypeError: The loss returned something other than a 0-d tensor.
    """
    if not isinstance(value, torch.Tensor) or value.ndim != 0:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise TypeError(
            f"{forward_name}: {loss_name} returned {shape}, expected a scalar tensor; use a "
            "loss with reduction='mean' (e.g. the ssl_losses classes)."
        )
    return value


def joint_embedding_forward(
    self: Any,
    batch: Mapping[str, Any],
    stage: str,
    *,
    forward_name: str,
    loss_name: str,
    loss_example: str,
    exact_views: int | None = None,
    min_views: int | None = None,
) -> dict[str, Any]:
    """Body shared by SimCLR, VICReg and Barlow Twins: backbone -> projector -> pairwise loss.

    Outside training only the backbone runs. In training the projections of all rows are folded
    by ``sample_idx`` and the loss is averaged over all unordered view pairs.
    """
    training = check_stage(stage, forward_name)
    backbone = require(self, "backbone", forward_name, "ssl_core.backbone.SmallResNet()")
    out = base_outputs(batch)
    out["embedding"] = backbone(require_image(batch, forward_name))
    if not training:
        return out
    projector = require(self, "projector", forward_name, "ssl_core.backbone.MLP(...)")
    loss_fn = require(self, loss_name, forward_name, loss_example)
    (views,) = fold_training_views(
        [projector(out["embedding"])],
        batch,
        forward_name,
        exact_views=exact_views,
        min_views=min_views,
        module=self,
    )
    out["loss"] = mean_over_view_pairs(loss_fn, views, forward_name, loss_name)
    return out
