import math

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from ssl_callbacks import OnlineKNN, OnlineProbe, TeacherStudentCallback
from ssl_core import Module, TeacherStudentWrapper


class RecordingWrapper(TeacherStudentWrapper):
    def __init__(self, student, clock, **kwargs):
        super().__init__(student, **kwargs)
        self.clock = clock  # () -> the trainer's global_step at the call
        self.calls = []

    def update_teacher(self, progress):
        self.calls.append((progress, self.clock()))
        return super().update_teacher(progress)


class EmaModule(pl.LightningModule):
    def __init__(self):
        super().__init__()

        def clock():
            return self.trainer.global_step

        self.net = RecordingWrapper(nn.Linear(6, 6), clock, base_ema_coefficient=0.5)
        self.head = nn.Sequential(RecordingWrapper(nn.Linear(6, 2), clock))  # nested wrapper
        self.batches_seen = 0

    def training_step(self, batch, batch_idx):
        self.batches_seen += 1
        emb = self.net(batch["x"])
        return {"loss": self.head(emb).pow(2).mean(), "embedding": emb}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_updates_after_each_optimiser_step(toy, tmp_path, accumulate):
    x, y = torch.randn(64, 6), torch.zeros(64, dtype=torch.long)
    module = EmaModule()
    teacher_before = module.net.teacher.weight.clone()
    callback = TeacherStudentCallback()
    trainer = toy.trainer(tmp_path, [callback], accumulate_grad_batches=accumulate)
    trainer.fit(module, toy.loader(x, y, batch_size=8))  # 8 batches
    steps = 8 // accumulate
    expected = [(s / steps, s) for s in range(1, steps + 1)]
    assert module.net.calls == expected
    assert module.head[0].calls == expected
    assert callback.updates == steps
    # The last call used progress 1 -> coefficient 1 (teacher frozen then), earlier ones moved it.
    assert float(module.net.ema_coefficient) == 1.0
    assert not torch.equal(module.net.teacher.weight, teacher_before)


def test_progress_value_drives_coefficient(toy, tmp_path):
    x, y = torch.randn(32, 6), torch.zeros(32, dtype=torch.long)
    module = EmaModule()
    seen = []

    class Spy(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(float(pl_module.net.ema_coefficient))

    trainer = toy.trainer(tmp_path, [TeacherStudentCallback(), Spy()], max_epochs=1)
    trainer.fit(module, toy.loader(x, y, batch_size=8))  # 4 steps
    expected = [1.0 - 0.5 * (math.cos(math.pi * s / 4) + 1) / 2 for s in range(1, 5)]
    assert seen == pytest.approx(expected)


def _forward(self, batch, stage):
    emb = self.backbone(batch["x"])
    out = {"embedding": emb, "label": batch["label"]}
    if stage == "train":
        out["loss"] = (emb - self.backbone.forward_teacher(batch["x"])).pow(2).mean() + emb.var()
    return out


def test_with_ssl_core_module(toy, tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=g)
    y = (x[:, 0] > 0).long()
    module = Module(forward=_forward, backbone=TeacherStudentWrapper(nn.Linear(6, 6)))
    knn = OnlineKNN("knn", "embedding", "label", queue_length=32, k=5, num_classes=2)
    probe = OnlineProbe("probe", "embedding", "label", probe=nn.Linear(6, 2))
    ema = TeacherStudentCallback()
    trainer = toy.trainer(tmp_path, [knn, probe, ema], max_epochs=2)
    trainer.fit(module, toy.loader(x, y), toy.loader(x, y))
    for key in ("val/knn_top1", "val/knn_top5", "val/probe_top1", "train/probe_loss"):
        assert key in trainer.callback_metrics
    assert ema.updates == trainer.global_step == 12
    assert knn.bank()[0].shape == (32, 6)
