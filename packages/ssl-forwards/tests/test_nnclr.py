"""NNCLR: nearest neighbours against brute force, loss values, queue errors, and a real queue."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import ssl_callbacks
import ssl_core
import ssl_losses
from ssl_forwards import SUPPORT_SET_KEY, nearest_neighbours, nnclr_forward

DIM, FEAT, PROJ = 6, 5, 4


def brute_force_argmax(query: torch.Tensor, support: torch.Tensor) -> list[int]:
    """Cosine nearest neighbour written with Python loops over rows."""
    best = []
    for q in query.tolist():
        sims = []
        for s in support.tolist():
            dot = sum(a * b for a, b in zip(q, s, strict=True))
            sims.append(dot / (math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in s))))
        best.append(max(range(len(sims)), key=lambda j: sims[j]))
    return best


def fold_by_loop(x: torch.Tensor, sample_idx: torch.Tensor) -> list[torch.Tensor]:
    rows: dict[int, list[int]] = {}
    for row, s in enumerate(sample_idx.tolist()):
        rows.setdefault(s, []).append(row)
    ids = sorted(rows)
    return [x[[rows[s][v] for s in ids]] for v in range(len(rows[ids[0]]))]


class FixedQueue(pl.Callback):
    """A QueueProvider (the ssl_core.queues protocol) serving a fixed tensor."""

    def __init__(self, key: str, rows: torch.Tensor) -> None:
        self.key, self.rows = key, rows

    def provides_queue(self, key: str) -> bool:
        return key == self.key

    def get_queue(self, key: str) -> torch.Tensor:
        return self.rows


def nnclr_module(support_set_size: int = 64, **hparams) -> ssl_core.Module:
    torch.manual_seed(0)
    return ssl_core.Module(
        forward=nnclr_forward,
        hparams={"support_set_size": support_set_size, "projection_dim": PROJ, **hparams},
        backbone=nn.Linear(DIM, FEAT),
        projector=nn.Sequential(nn.ReLU(), nn.Linear(FEAT, PROJ)),
        predictor=nn.Linear(PROJ, PROJ),
        nnclr_loss=ssl_losses.NTXEntLoss(temperature=0.5),
        optim={"optimizer": {"type": "SGD", "lr": 0.0}, "scheduler": None},
    )


def attach(module: ssl_core.Module, *callbacks: pl.Callback) -> None:
    module.trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=list(callbacks)
    )


def expected_loss(module, batch, support: torch.Tensor | None) -> torch.Tensor:
    """mean over ordered view pairs i != j of loss(p_i, NN(z_j)), NN by brute force."""
    z = module.projector(module.backbone(batch["image"]))
    views = fold_by_loop(z, batch["sample_idx"])
    preds = [module.predictor(v) for v in views]
    if support is None:
        positives = views
    else:
        positives = [support[brute_force_argmax(v, support)] for v in views]
    pairs = [(i, j) for i in range(len(views)) for j in range(len(views)) if i != j]
    return sum(module.nnclr_loss(preds[i], positives[j]) for i, j in pairs) / len(pairs)


def test_nearest_neighbours_equal_brute_force_argmax() -> None:
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(12, 5, generator=gen)
    # rows of very different norms: a dot-product argmax would pick the long rows
    support = torch.randn(40, 5, generator=gen) * torch.logspace(-2, 2, 40)[:, None]
    neighbours, idx = nearest_neighbours(query, support)
    assert idx.tolist() == brute_force_argmax(query, support)
    assert torch.equal(neighbours, support[idx])
    assert idx.tolist() != (query @ support.T).argmax(1).tolist()


@pytest.mark.parametrize("views", [2, 3])
def test_loss_uses_nearest_neighbours_from_the_queue(views, flat_batch) -> None:
    module = nnclr_module()
    support = torch.randn(30, PROJ, generator=torch.Generator().manual_seed(1))
    attach(module, FixedQueue(SUPPORT_SET_KEY, support))
    batch = flat_batch(n=8, views=views, shuffle=True)
    out = module(batch, "train")
    assert set(out) == {"embedding", "loss", "label", SUPPORT_SET_KEY}
    torch.testing.assert_close(out["loss"], expected_loss(module, batch, support))
    projections = module.projector(module.backbone(batch["image"]))
    torch.testing.assert_close(out[SUPPORT_SET_KEY], projections)
    assert not out[SUPPORT_SET_KEY].requires_grad
    out["loss"].backward()
    assert module.predictor.weight.grad.abs().sum() > 0


def test_support_set_is_the_newest_support_set_size_rows(flat_batch) -> None:
    module = nnclr_module(support_set_size=5)
    batch = flat_batch(n=8, views=2)
    z = module.projector(module.backbone(batch["image"])).detach()
    # the older rows are the projections themselves (perfect neighbours) and must be ignored
    queue = torch.cat([z, torch.randn(5, PROJ, generator=torch.Generator().manual_seed(2))])
    attach(module, FixedQueue(SUPPORT_SET_KEY, queue))
    out = module(batch, "train")
    torch.testing.assert_close(out["loss"], expected_loss(module, batch, queue[-5:]))


def test_empty_queue_falls_back_to_plain_contrastive_pairs(flat_batch) -> None:
    module = nnclr_module()
    attach(module, FixedQueue(SUPPORT_SET_KEY, torch.zeros(0, PROJ)))
    batch = flat_batch(n=8, views=2)
    out = module(batch, "train")
    torch.testing.assert_close(out["loss"], expected_loss(module, batch, None))
    out["loss"].backward()
    assert all(p.grad is not None for p in module.parameters())


def test_eval_stages_do_not_need_a_queue(flat_batch) -> None:
    module = nnclr_module()
    batch = flat_batch(n=4, views=1)
    for stage in ["val", "test", "predict"]:
        assert set(module(batch, stage)) == {"embedding", "label"}


def test_missing_queue_names_the_callback_to_add(flat_batch) -> None:
    module = nnclr_module(support_set_size=16)
    attach(module)
    expected = (
        r'ssl_callbacks.OnlineQueue\(key="nnclr_support_set", queue_length=16, dim=4\) to '
        r"Trainer\(callbacks="
    )
    with pytest.raises(LookupError, match=expected):
        module(flat_batch(), "train")


def test_width_mismatches_are_errors(flat_batch) -> None:
    module = nnclr_module()
    attach(module, FixedQueue(SUPPORT_SET_KEY, torch.randn(3, PROJ + 1)))
    with pytest.raises(ValueError, match=r"holds rows of shape \(5,\), expected \(4,\)"):
        module(flat_batch(), "train")
    module = nnclr_module(projection_dim=PROJ + 2)
    attach(module, FixedQueue(SUPPORT_SET_KEY, torch.randn(3, PROJ)))
    with pytest.raises(ValueError, match=r"projector returned shape \(16, 4\), expected \[B, 6\]"):
        module(flat_batch(), "train")


def test_missing_hparam_names_the_fix(flat_batch) -> None:
    module = ssl_core.Module(
        forward=nnclr_forward,
        hparams={"projection_dim": PROJ},
        backbone=nn.Linear(DIM, FEAT),
        projector=nn.Linear(FEAT, PROJ),
        predictor=nn.Linear(PROJ, PROJ),
        nnclr_loss=ssl_losses.NTXEntLoss(),
    )
    with pytest.raises(AttributeError, match=r"hparams=\{'support_set_size': "):
        module(flat_batch(), "train")


class CheckAgainstQueue(pl.Callback):
    """Before OnlineQueue pushes, recompute the expected loss from the queue the forward saw."""

    def __init__(self) -> None:
        self.checked_with_queue = 0
        self.checked_empty = 0

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        support = ssl_core.find_queue(pl_module, SUPPORT_SET_KEY)
        if support.shape[0] == 0:
            expected = expected_loss(pl_module, batch, None)
            self.checked_empty += 1
        else:
            expected = expected_loss(pl_module, batch, support)
            self.checked_with_queue += 1
        torch.testing.assert_close(outputs["loss"], expected)


def test_fit_with_online_queue_uses_brute_force_neighbours(flat_batch, make_trainer) -> None:
    module = nnclr_module(support_set_size=24)  # lr = 0: weights stay, so losses can be redone
    batches = [flat_batch(n=8, views=2, seed=s) for s in range(4)]
    checker = CheckAgainstQueue()
    queue = ssl_callbacks.OnlineQueue(key=SUPPORT_SET_KEY, queue_length=24, dim=PROJ)
    trainer = make_trainer(max_steps=4, callbacks=[checker, queue])
    trainer.fit(module, DataLoader(batches, batch_size=None))
    assert (checker.checked_empty, checker.checked_with_queue) == (1, 3)
    assert ssl_core.find_queue(module, SUPPORT_SET_KEY).shape == (24, PROJ)
