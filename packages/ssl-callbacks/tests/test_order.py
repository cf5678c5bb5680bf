"""Any order of the callback list gives the same run, metrics and checkpoint."""

import itertools

import lightning.pytorch as pl
import torch
from torch import nn

from ssl_callbacks import OnlineKNN, OnlineProbe, OnlineQueue, RankMe, TeacherStudentCallback
from ssl_core import TeacherStudentWrapper, find_queue


class QueueReader(pl.LightningModule):
    """Reads the "embedding" queue in its step (as NNCLR does) and has an EMA teacher."""

    def __init__(self):
        super().__init__()
        self.net = TeacherStudentWrapper(nn.Linear(6, 6), base_ema_coefficient=0.9)

    def _step(self, batch):
        emb = self.net(batch["x"])
        loss = emb.pow(2).mean() + self.net.forward_teacher(batch["x"]).mean().detach()
        if self.training:
            support = find_queue(self, "embedding")
            if support.shape[0]:
                loss = loss + 0.1 * (emb @ support.T).mean()
        return {"loss": loss, "embedding": emb, "label": batch["label"]}

    def training_step(self, batch, batch_idx):
        return self._step(batch)

    def validation_step(self, batch, batch_idx):
        return self._step(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def _callbacks():
    torch.manual_seed(1)
    return [
        OnlineProbe("probe", "embedding", "label", probe=nn.Linear(6, 3)),
        OnlineKNN("knn", "embedding", "label", queue_length=24, k=3, num_classes=3),
        RankMe("rankme", "embedding", queue_length=12),
        OnlineQueue("embedding", queue_length=10),
        TeacherStudentCallback(),
    ]


def _run(toy, tmp_path, order):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    callbacks = _callbacks()
    callbacks = [callbacks[i] for i in order]
    pl.seed_everything(0)
    module = QueueReader()
    trainer = toy.trainer(tmp_path, callbacks, max_epochs=2)
    trainer.fit(module, toy.loader(x, y), toy.loader(x, y, batch_size=16))
    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    metrics = {k: v.clone() for k, v in trainer.callback_metrics.items()}
    state = torch.load(ckpt, weights_only=False)
    return module.state_dict(), metrics, state["callbacks"]


def _assert_same(a, b, path="") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (path, set(a) ^ set(b))
        for key in a:
            _assert_same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _assert_same(u, v, f"{path}[{i}]")
    else:
        assert a == b, path


def test_permuted_callbacks_give_bit_identical_runs(toy, tmp_path):
    orders = [(0, 1, 2, 3, 4), (4, 3, 2, 1, 0), (3, 0, 4, 2, 1)]
    runs = [_run(toy, tmp_path / str(i), order) for i, order in enumerate(orders)]
    weights, metrics, states = runs[0]
    assert {"val/knn_top1", "val/probe_top1", "val/rankme", "train/probe_loss"} <= set(metrics)
    assert states["OnlineKNN[knn]"]["queues"]["embedding"].shape == (24, 6)
    for other in runs[1:]:
        _assert_same(weights, other[0], "weights")
        _assert_same(metrics, other[1], "metrics")
        _assert_same(states, other[2], "checkpoint callbacks")


def test_a_new_owner_keeps_checkpointed_rows(toy, tmp_path):
    """Resume a run whose queue was saved by OnlineQueue into a list where the kNN owns it."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 6, generator=g), torch.randint(0, 3, (30,), generator=g)
    ckpt = tmp_path / "queue.ckpt"
    first = OnlineQueue("embedding", queue_length=20)
    trainer = toy.trainer(tmp_path / "a", [first], max_epochs=1)
    trainer.fit(toy.Module(dim=6, identity=True), toy.loader(x, y))
    trainer.save_checkpoint(ckpt)
    for order in itertools.permutations(range(2)):
        queue = OnlineQueue("embedding", queue_length=20)
        knn = OnlineKNN("knn", "embedding", "label", queue_length=25, k=3, num_classes=3)
        callbacks = [[queue, knn][i] for i in order]
        trainer = toy.trainer(tmp_path / f"b{order}", callbacks, max_epochs=1)
        trainer.fit(toy.Module(dim=6, identity=True), toy.loader(x, y), ckpt_path=str(ckpt))
        assert knn._owned == {"embedding", "label"}
        assert torch.equal(queue.get_queue("embedding"), x[-20:])
