"""A linear probe trained on frozen, cached features."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ProbeSettings", "linear_probe"]


@dataclass(frozen=True)
class ProbeSettings:
    """Training settings of the linear probe.

    Attributes:
        epochs: Passes over the cached training features.
        min_steps: At least this many optimiser steps (more epochs on small sets, where a few
            epochs are only a handful of steps).
        lr: Peak learning rate of AdamW (cosine decay to 0 over all steps, no warm-up).
        weight_decay: AdamW weight decay.
        batch_size: Rows per step (the whole set when larger).
        label_smoothing: Cross-entropy label smoothing.
    """

    epochs: int = 30
    min_steps: int = 1000
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 256
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        """Check the values."""
        if (
            self.epochs < 1
            or self.min_steps < 0
            or self.batch_size < 1
            or not self.lr > 0
            or self.weight_decay < 0
        ):
            raise ValueError(
                "probe settings need epochs >= 1, min_steps >= 0, batch_size >= 1, lr > 0 and "
                f"weight_decay >= 0, got {self}."
            )


def _standardise(
    train: torch.Tensor, test: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    mean = train.mean(dim=0)
    std = train.std(dim=0)
    # Constant columns (e.g. border pixels) keep their scale instead of exploding.
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std, mean, std


def _train(
    probe: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    batch: int,
    generator: torch.Generator,
) -> None:
    n = x.shape[0]
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator).to(x.device)
            for start in range(0, n, batch):
                idx = order[start : start + batch]
                loss = loss_fn(probe(x[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    settings: ProbeSettings | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Train ``nn.Linear(D, C)`` on standardised cached features and score the test features.

    Features are standardised with the training set's per-dimension mean and std; the probe is
    trained with AdamW and a per-step cosine schedule on shuffled minibatches of the cached
    tensor (seeded), then evaluated once.

    Args:
        train_features: ``[N, D]`` training features.
        train_labels: ``[N]`` training labels.
        test_features: ``[M, D]`` test features.
        test_labels: ``[M]`` test labels.
        num_classes: Number of classes C.
        settings: Training settings (default :class:`ProbeSettings`).
        seed: Seed of the initialisation and the shuffling.
        device: Where to train.

    Returns:
        ``{"top1", "top5", "train_top1", "epochs"}``: accuracies as fractions in ``[0, 1]``
        (torchmetrics, micro-averaged; ``top5`` is top-``min(5, C)``) and the epochs trained.

    Example:
        >>> x = torch.randn(64, 8); y = (x[:, 0] > 0).long()
        >>> linear_probe(x, y, x, y, num_classes=2)["top1"] > 0.9
        True
    """
    from torchmetrics.functional.classification import multiclass_accuracy

    settings = settings or ProbeSettings()
    dev = torch.device(device)
    x_train, x_test, _, _ = _standardise(train_features.float(), test_features.float())
    x_train, y_train = x_train.to(dev), train_labels.long().to(dev)
    generator = torch.Generator().manual_seed(seed)
    probe = nn.Linear(x_train.shape[1], num_classes).to(dev)
    with torch.no_grad():
        bound = 1.0 / math.sqrt(x_train.shape[1])
        probe.weight.copy_(
            torch.empty_like(probe.weight, device="cpu").uniform_(
                -bound, bound, generator=generator
            )
        )
        probe.bias.zero_()
    optimizer = torch.optim.AdamW(
        probe.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    n = x_train.shape[0]
    batch = min(settings.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    epochs = max(settings.epochs, math.ceil(settings.min_steps / steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs * steps_per_epoch
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    # The steps are tiny matmuls: on CPU intra-op threads only add synchronisation (and spin
    # badly when the cores are busy: 100x slower measured on 2 shared cores), so use one.
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        _train(probe, optimizer, scheduler, loss_fn, x_train, y_train, epochs, batch, generator)
    finally:
        torch.set_num_threads(threads)

    def score(x: torch.Tensor, y: torch.Tensor, top_k: int) -> float:
        with torch.no_grad():
            logits = probe(x.to(dev)).cpu()
        k = min(top_k, num_classes)
        return float(
            multiclass_accuracy(
                logits, y.long().cpu(), num_classes=num_classes, top_k=k, average="micro"
            )
        )

    return {
        "epochs": float(epochs),
        "top1": score(x_test, test_labels, 1),
        "top5": score(x_test, test_labels, 5),
        "train_top1": score(x_train, train_labels, 1),
    }
