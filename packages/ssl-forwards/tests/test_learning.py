"""On a small seeded problem each method's loss falls and its embedding separates classes better.

Data: 4 Gaussian clusters in 2 "signal" dimensions plus 14 dimensions of large nuisance noise.
Each view keeps the sample's signal (plus small noise) and redraws the nuisance, so a method that
learns invariance across views learns to ignore the nuisance. At initialisation the nuisance
dominates distances, so a kNN classifier on the embedding is poor (about 0.5); after 50 steps it
must be clearly better.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import ssl_callbacks
import ssl_core
import ssl_forwards
import ssl_losses
from ssl_core.backbone import MLP

CLASSES, SIGNAL, NUISANCE, FEAT, PROJ = 4, 2, 14, 32, 16
STEPS, BATCH = 50, 64
# Smallest kNN gain required. BYOL (no negatives, a lagging EMA target as embedding) learns more
# slowly here: over data seeds 0-2 it gained 0.17-0.32 in 50 steps, the others 0.26-0.55.
MIN_GAIN = {"byol": 0.1}


def cluster_batch(gen: torch.Generator, n: int, views: int) -> dict[str, torch.Tensor]:
    label = torch.randint(CLASSES, (n,), generator=gen)
    angle = 2 * math.pi * label / CLASSES
    signal = 3 * torch.stack([angle.cos(), angle.sin()], 1)
    signal = signal + 0.5 * torch.randn(n, SIGNAL, generator=gen)
    rows = [
        torch.cat(
            [
                signal + 0.2 * torch.randn(n, SIGNAL, generator=gen),
                3.0 * torch.randn(n, NUISANCE, generator=gen),
            ],
            1,
        )
        for _ in range(views)
    ]
    return {
        "image": torch.cat(rows),
        "label": label.repeat(views),
        "sample_idx": torch.arange(n).repeat(views),
    }


def knn_accuracy(embedding: torch.Tensor, label: torch.Tensor, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy (cosine, majority vote)."""
    e = nn.functional.normalize(embedding, dim=1)
    similarity = e @ e.T
    similarity.fill_diagonal_(-math.inf)
    neighbours = similarity.topk(k, dim=1).indices
    votes = nn.functional.one_hot(label[neighbours], CLASSES).sum(1)
    return (votes.argmax(1) == label).float().mean().item()


def build(method: str) -> tuple[ssl_core.Module, list]:
    torch.manual_seed(0)
    backbone = MLP(SIGNAL + NUISANCE, [64], FEAT)
    projector = MLP(FEAT, [64], PROJ)
    optim = {"optimizer": {"type": "Adam", "lr": 5e-3}, "scheduler": None}
    parts: dict = {"backbone": backbone, "projector": projector, "optim": optim}
    callbacks: list = []
    if method == "simclr":
        parts["simclr_loss"] = ssl_losses.NTXEntLoss(temperature=0.2)
    elif method == "vicreg":
        parts["vicreg_loss"] = ssl_losses.VICRegLoss()
    elif method == "barlow_twins":
        parts["barlow_loss"] = ssl_losses.BarlowTwinsLoss(lambda_=0.05)
    elif method == "nnclr":
        parts["nnclr_loss"] = ssl_losses.NTXEntLoss(temperature=0.2)
        parts["predictor"] = MLP(PROJ, [64], PROJ)
        parts["hparams"] = {"support_set_size": 256, "projection_dim": PROJ}
        callbacks.append(
            ssl_callbacks.OnlineQueue(key=ssl_forwards.SUPPORT_SET_KEY, queue_length=256, dim=PROJ)
        )
    elif method == "byol":
        parts["backbone"] = ssl_core.TeacherStudentWrapper(backbone, 0.5, 0.9)
        parts["projector"] = ssl_core.TeacherStudentWrapper(projector, 0.5, 0.9)
        parts["predictor"] = MLP(PROJ, [64], PROJ)
        callbacks.append(ssl_callbacks.TeacherStudentCallback())
    else:
        assert method == "supervised"
        del parts["projector"]
        parts["classifier"] = nn.Linear(FEAT, CLASSES)
    forward = getattr(ssl_forwards, f"{method}_forward")
    return ssl_core.Module(forward=forward, **parts), callbacks


def embedding_knn(module: ssl_core.Module, batch: dict[str, torch.Tensor]) -> float:
    module.eval()
    with torch.no_grad():
        accuracy = knn_accuracy(module(batch, "val")["embedding"], batch["label"])
    module.train()
    return accuracy


@pytest.mark.slow
@pytest.mark.parametrize(
    "method", ["simclr", "nnclr", "byol", "vicreg", "barlow_twins", "supervised"]
)
def test_loss_falls_and_knn_accuracy_rises(method, make_trainer, recorder) -> None:
    gen = torch.Generator().manual_seed(0)
    train = [cluster_batch(gen, BATCH, views=2) for _ in range(STEPS)]
    held_out = cluster_batch(gen, 256, views=1)
    module, callbacks = build(method)
    before = embedding_knn(module, held_out)
    make_trainer(max_steps=STEPS, callbacks=[*callbacks, recorder]).fit(
        module, DataLoader(train, batch_size=None)
    )
    after = embedding_knn(module, held_out)
    losses = recorder.losses
    assert len(losses) == STEPS
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5, losses
    assert before < 0.6, before  # the problem is hard for a random network
    assert after > before + MIN_GAIN.get(method, 0.2), (before, after)
