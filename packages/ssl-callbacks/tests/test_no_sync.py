"""The shipped callbacks' training batch hooks never read a device tensor on the host."""

import functools
import traceback
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from ssl_callbacks import (
    OnlineKNN,
    OnlineProbe,
    OnlineQueue,
    RankMe,
    TeacherStudentCallback,
)
from ssl_core import TeacherStudentWrapper

SYNC_METHODS = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")


class EmaModule(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = TeacherStudentWrapper(nn.Linear(6, 6), base_ema_coefficient=0.9)

    def training_step(self, batch, batch_idx):
        emb = self.net(batch["x"])
        return {"loss": emb.pow(2).mean(), "embedding": emb, "label": batch["label"]}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _counting(monkeypatch, counts, active):
    def wrap(owner, name):
        original = getattr(owner, name)

        @functools.wraps(original)
        def counted(*args, **kwargs):
            caller = traceback.extract_stack(limit=2)[0]
            # torch.optim keeps Adam's step counter on the host on every device (non-capturable
            # optimisers), so _get_value's .item() reads host memory, not the device.
            host_counter = caller.name == "_get_value" and "torch/optim" in caller.filename
            if active and not host_counter:
                where = traceback.extract_stack(limit=3)[0]
                label = f"{name} at {Path(where.filename).name}:{where.lineno}"
                counts[label] = counts.get(label, 0) + 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    for name in SYNC_METHODS:
        wrap(torch.Tensor, name)
    for name in ("unique", "nonzero", "masked_select"):
        wrap(torch, name)


def test_training_batch_hooks_read_nothing_back(toy, tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    callbacks = [
        OnlineProbe("probe", "embedding", "label", probe=nn.Linear(6, 3)),
        OnlineKNN("knn", "embedding", "label", queue_length=32, k=3, num_classes=3),
        RankMe("rankme", "embedding", queue_length=16),
        OnlineQueue("embedding", queue_length=8),
        OnlineQueue("sample_idx", queue_length=8),
        TeacherStudentCallback(),
    ]
    counts: dict[str, int] = {}
    active: list[bool] = []
    calls = {"hooks": 0}
    for cb in callbacks:
        hook = cb.on_train_batch_end

        def instrumented(*args, _hook=hook, **kwargs):
            active.append(True)
            calls["hooks"] += 1
            try:
                return _hook(*args, **kwargs)
            finally:
                active.pop()

        cb.on_train_batch_end = instrumented
    _counting(monkeypatch, counts, active)
    trainer = toy.trainer(tmp_path, callbacks, max_epochs=1, limit_val_batches=0)
    trainer.fit(EmaModule(), toy.loader(x, y, batch_size=8))
    assert calls["hooks"] == 5 * len(callbacks)
    assert counts == {}, f"host reads inside on_train_batch_end: {counts}"


def test_counter_sees_a_sync(monkeypatch):
    counts: dict[str, int] = {}
    _counting(monkeypatch, counts, [True])
    int(torch.tensor(3))
    bool(torch.tensor(True))
    torch.tensor([1.0]).item()
    assert {k.split()[0] for k in counts} >= {"__int__", "__bool__", "item"}


@pytest.mark.parametrize("bad", ["label", "nan"])
def test_deferred_checks_raise_at_validation(toy, tmp_path, bad):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    if bad == "label":
        y[5] = 7
    else:
        x[3, 2] = float("nan")
    probe = OnlineProbe("probe", "embedding", "label", probe=nn.Linear(6, 3))
    trainer = toy.trainer(tmp_path, [probe], max_epochs=1)
    match = (
        r"OnlineProbe\('probe'\): got label 7 in a training batch"
        if bad == "label"
        else (r"OnlineProbe\('probe'\): the training features 'embedding' held NaN or Inf")
    )
    with pytest.raises(ValueError, match=match):
        trainer.fit(toy.Module(dim=6, identity=True), toy.loader(x, y), toy.loader(x, y))
