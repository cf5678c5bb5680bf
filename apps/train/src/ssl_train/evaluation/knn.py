"""Weighted kNN classification of cached features (faiss, via ``ssl_callbacks``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["knn_accuracy", "knn_scores"]


def knn_scores(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    ks: Sequence[int] = (10, 20, 200),
    temperature: float = 0.07,
) -> dict[int, torch.Tensor]:
    """Class vote shares of every test row for each ``k``, from one exact cosine search.

    The neighbours come from one faiss ``Flat`` inner-product search of the L2-normalised
    features for the largest ``k`` (:func:`ssl_callbacks.build_index` /
    :func:`ssl_callbacks.search`); each ``k`` votes with its first ``k`` of them, weighted by
    ``exp(sim / T)`` (:func:`ssl_callbacks.weighted_vote`).

    Args:
        train_features: ``[N, D]`` bank features.
        train_labels: ``[N]`` bank labels.
        test_features: ``[M, D]`` query features.
        num_classes: Number of classes C.
        ks: Neighbour counts; each is capped at ``N``.
        temperature: T of the ``exp(sim / T)`` weights.

    Returns:
        ``{k: [M, C] vote shares}``.
    """
    from ssl_callbacks import build_index, search, weighted_vote

    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive neighbour counts, got {list(ks)}.")
    n = train_features.shape[0]
    index = build_index(train_features, distance="cosine")
    scores, ids = search(index, test_features, min(max(ks), n), distance="cosine")
    neighbour_labels = train_labels.cpu()[ids.clamp_min(0)]
    out = {}
    for k in ks:
        kk = min(k, n)
        out[k] = weighted_vote(
            scores[:, :kk],
            neighbour_labels[:, :kk],
            num_classes,
            distance="cosine",
            temperature=temperature,
            valid=ids[:, :kk] >= 0,
        )
    return out


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    ks: Sequence[int] = (10, 20, 200),
    temperature: float = 0.07,
) -> dict[int, dict[str, float]]:
    """Top-1/top-5 accuracy of weighted kNN for each ``k`` (see :func:`knn_scores`).

    Returns:
        ``{k: {"top1": ..., "top5": ...}}`` as fractions in ``[0, 1]`` (torchmetrics,
        micro-averaged); ``top5`` is top-``min(5, C)``.

    Example:
        >>> x = torch.eye(4).repeat(5, 1); y = torch.arange(4).repeat(5)
        >>> per_k = knn_accuracy(x, y, x[:4], y[:4], num_classes=4, ks=[3])
        >>> per_k.get(3)
        {'top1': 1.0, 'top5': 1.0}
    """
    from torchmetrics.functional.classification import multiclass_accuracy

    votes = knn_scores(train_features, train_labels, test_features, num_classes, ks, temperature)
    target = test_labels.cpu().long()
    result = {}
    for k, shares in votes.items():
        result[k] = {
            f"top{t}": float(
                multiclass_accuracy(
                    shares,
                    target,
                    num_classes=num_classes,
                    top_k=min(t, num_classes),
                    average="micro",
                )
            )
            for t in (1, 5)
        }
    return result
