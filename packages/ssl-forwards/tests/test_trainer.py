"""Each forward in a short Trainer.fit / validate / test / predict on CPU with tiny models."""

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
from ssl_core.backbone import MLP, SmallResNet
from ssl_forwards import (
    SUPPORT_SET_KEY,
    barlow_twins_forward,
    byol_forward,
    nnclr_forward,
    simclr_forward,
    supervised_forward,
    vicreg_forward,
)

DIM, FEAT, PROJ = 6, 8, 4


def build(method: str) -> tuple[ssl_core.Module, list[pl.Callback]]:
    torch.manual_seed(0)
    backbone = MLP(DIM, [16], FEAT)
    projector = MLP(FEAT, [16], PROJ)
    common = {"optim": {"optimizer": {"type": "SGD", "lr": 0.05}}}
    if method == "simclr":
        return ssl_core.Module(
            forward=simclr_forward,
            backbone=backbone,
            projector=projector,
            simclr_loss=ssl_losses.NTXEntLoss(temperature=0.5),
            **common,
        ), []
    if method == "vicreg":
        return ssl_core.Module(
            forward=vicreg_forward,
            backbone=backbone,
            projector=projector,
            vicreg_loss=ssl_losses.VICRegLoss(),
            **common,
        ), []
    if method == "barlow_twins":
        return ssl_core.Module(
            forward=barlow_twins_forward,
            backbone=backbone,
            projector=projector,
            barlow_loss=ssl_losses.BarlowTwinsLoss(lambda_=5e-3),
            **common,
        ), []
    if method == "nnclr":
        queue = ssl_callbacks.OnlineQueue(key=SUPPORT_SET_KEY, queue_length=32, dim=PROJ)
        return ssl_core.Module(
            forward=nnclr_forward,
            hparams={"support_set_size": 32, "projection_dim": PROJ},
            backbone=backbone,
            projector=projector,
            predictor=MLP(PROJ, [16], PROJ),
            nnclr_loss=ssl_losses.NTXEntLoss(temperature=0.5),
            **common,
        ), [queue]
    if method == "byol":
        return ssl_core.Module(
            forward=byol_forward,
            backbone=ssl_core.TeacherStudentWrapper(backbone, 0.9, 1.0),
            projector=ssl_core.TeacherStudentWrapper(projector, 0.9, 1.0),
            predictor=MLP(PROJ, [16], PROJ),
            **common,
        ), [ssl_callbacks.TeacherStudentCallback()]
    assert method == "supervised"
    return ssl_core.Module(
        forward=supervised_forward, backbone=backbone, classifier=nn.Linear(FEAT, 3), **common
    ), []


EXTRA_TRAIN_KEYS = {"nnclr": {SUPPORT_SET_KEY}, "supervised": {"logits"}}
EXTRA_EVAL_KEYS = {"supervised": {"logits", "loss"}}  # supervised: a loss wherever labels are


@pytest.mark.parametrize(
    "method", ["simclr", "nnclr", "byol", "vicreg", "barlow_twins", "supervised"]
)
def test_fit_validate_test_predict_output_keys(method, flat_batch, make_trainer, recorder) -> None:
    module, callbacks = build(method)
    train = [flat_batch(n=8, views=2, dim=DIM, seed=s, shuffle=True) for s in range(3)]
    evaluation = [flat_batch(n=8, views=1, dim=DIM, seed=10 + s) for s in range(2)]
    unlabelled = [{"image": b["image"]} for b in evaluation]
    trainer = make_trainer(max_epochs=1, callbacks=[*callbacks, recorder])
    trainer.fit(module, DataLoader(train, batch_size=None), DataLoader(evaluation, batch_size=None))
    assert math.isfinite(trainer.callback_metrics["train/loss_epoch"])  # logged by ssl_core.Module
    trainer.test(module, DataLoader(evaluation, batch_size=None), verbose=False)
    predictions = trainer.predict(module, DataLoader(unlabelled, batch_size=None))

    assert trainer.global_step == 3 and len(recorder.losses) == 3
    assert all(math.isfinite(loss) for loss in recorder.losses)
    extra_train = EXTRA_TRAIN_KEYS.get(method, set())
    extra_eval = EXTRA_EVAL_KEYS.get(method, set())
    assert recorder.keys["train"] == {"embedding", "loss", "label"} | extra_train
    assert recorder.keys["val"] == {"embedding", "label"} | extra_eval
    assert recorder.keys["test"] == {"embedding", "label"} | extra_eval
    assert recorder.keys["predict"] == {"embedding"} | (extra_eval - {"loss"})  # unlabelled
    assert [p["embedding"].shape for p in predictions] == [(8, FEAT), (8, FEAT)]


def test_simclr_with_a_conv_backbone_on_images(flat_batch, make_trainer, recorder) -> None:
    torch.manual_seed(0)
    backbone = SmallResNet(in_channels=1, widths=(4, 8))
    module = ssl_core.Module(
        forward=simclr_forward,
        backbone=backbone,
        projector=nn.Linear(backbone.out_features, PROJ),
        simclr_loss=ssl_losses.NTXEntLoss(temperature=0.5),
        optim={"optimizer": {"type": "SGD", "lr": 0.05}},
    )
    batches = []
    for s in range(2):
        batch = flat_batch(n=4, views=3, dim=64, seed=s, shuffle=True)
        batch["image"] = batch["image"].view(-1, 1, 8, 8)
        batches.append(batch)
    make_trainer(max_steps=2, callbacks=[recorder]).fit(
        module, DataLoader(batches, batch_size=None)
    )
    assert recorder.keys["train"] == {"embedding", "loss", "label"}
    assert len(recorder.losses) == 2


class CheckEMA(pl.Callback):
    """After TeacherStudentCallback: teacher = c * old_teacher + (1 - c) * student, no grads."""

    def __init__(self, base: float, final: float) -> None:
        self.base, self.final = base, final
        self.checked = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before = [
            [p.detach().clone() for p in w.teacher.parameters()]
            for w in (pl_module.backbone, pl_module.projector)
        ]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        progress = trainer.global_step / trainer.estimated_stepping_batches
        c = self.final - (self.final - self.base) * (math.cos(math.pi * progress) + 1) / 2
        moved = False
        for wrapper, before in zip(
            (pl_module.backbone, pl_module.projector), self.before, strict=True
        ):
            for old, teacher, student in zip(
                before, wrapper.teacher.parameters(), wrapper.student.parameters(), strict=True
            ):
                assert teacher.grad is None and not teacher.requires_grad
                torch.testing.assert_close(teacher, c * old + (1 - c) * student.detach())
                moved = moved or not torch.equal(teacher, old)
        assert moved == (c < 1.0)  # the last step (progress 1) has c = final = 1
        self.checked += 1


def test_byol_teacher_moves_by_ema_and_gets_no_gradient(flat_batch, make_trainer) -> None:
    module, callbacks = build("byol")
    batches = [flat_batch(n=8, views=2, dim=DIM, seed=s) for s in range(4)]
    checker = CheckEMA(base=0.9, final=1.0)
    make_trainer(max_steps=4, callbacks=[*callbacks, checker]).fit(
        module, DataLoader(batches, batch_size=None)
    )
    assert checker.checked == 4
    # the student really trained: it no longer equals its teacher
    student = dict(module.backbone.student.named_parameters())
    assert any(
        not torch.equal(p, student[n]) for n, p in module.backbone.teacher.named_parameters()
    )
