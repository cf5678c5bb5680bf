"""Regrouping of flat multi-view batches into per-view tensors."""

import torch

__all__ = ["fold_views"]


def fold_views(tensor: torch.Tensor, sample_idx: torch.Tensor) -> list[torch.Tensor]:
    """Split a flat multi-view tensor into one ``[N, ...]`` tensor per view.

    Rows with equal ``sample_idx`` are views of one sample. Samples come out in ascending
    ``sample_idx`` order and the views of a sample keep their order of appearance in ``tensor``:
    view ``v`` of a sample is its ``v``-th row. Row ``k`` of every returned tensor is therefore the
    same sample. Works for any row order and any number of views ``V >= 1`` with one stable sort
    (no Python loop over rows).

    Args:
        tensor: ``[N*V, ...]`` rows of a flat multi-view batch.
        sample_idx: ``[N*V]`` integer sample ids, aligned with ``tensor``.

    Returns:
        A list of ``V`` tensors, each ``[N, ...]``.

    Raises:
        ValueError: if the lengths differ, ``sample_idx`` is not a 1-D integer tensor, the batch is
            empty, or samples have unequal numbers of views.

    Example:
        >>> x = torch.tensor([10, 20, 11, 21])  # view-major: sample 0, sample 1, sample 0, sample 1
        >>> v0, v1 = fold_views(x, torch.tensor([0, 1, 0, 1]))
        >>> v0.tolist(), v1.tolist()
        ([10, 20], [11, 21])
    """
    if not isinstance(sample_idx, torch.Tensor) or sample_idx.ndim != 1:
        raise ValueError(
            "fold_views: sample_idx must be a 1-D tensor with one id per row; got "
            f"{type(sample_idx).__name__} of shape {getattr(sample_idx, 'shape', None)}. "
            "Pass batch['sample_idx']."
        )
    if sample_idx.dtype.is_floating_point or sample_idx.dtype.is_complex:
        raise ValueError(
            f"fold_views: sample_idx must be an integer tensor, got {sample_idx.dtype}; "
            "convert it with sample_idx.long()."
        )
    if tensor.shape[0] != sample_idx.shape[0]:
        raise ValueError(
            f"fold_views: tensor has {tensor.shape[0]} rows but sample_idx has "
            f"{sample_idx.shape[0]}; pass the sample_idx of the same batch (one id per row)."
        )
    if sample_idx.numel() == 0:
        raise ValueError("fold_views: the batch is empty; there are no views to fold.")
    sorted_idx, order = torch.sort(sample_idx, stable=True)
    _, counts = torch.unique_consecutive(sorted_idx, return_counts=True)
    n_views = int(counts[0])
    if bool((counts != n_views).any()):
        raise ValueError(
            "fold_views: samples have unequal numbers of views (counts between "
            f"{int(counts.min())} and {int(counts.max())}); make the batch size a multiple of "
            "n_views and keep each sample's views in one batch (RepeatedRandomSampler does)."
        )
    n_samples = counts.shape[0]
    # order.view(N, V)[n, v] is the row of view v of the n-th sample; gather view-major.
    gather = order.view(n_samples, n_views).t().reshape(-1).to(tensor.device)
    folded = tensor.index_select(0, gather).view(n_views, n_samples, *tensor.shape[1:])
    return list(folded.unbind(0))
