import lightning.pytorch as pl
import pytest
import torch

from ssl_callbacks import MissingKeyError, OnlineKNN, OnlineQueue, RankMe
from ssl_core.queues import QueueProvider, find_queue


def _data(n=40, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_queue_holds_last_training_rows_in_order(toy, tmp_path):
    x, y = _data(n=40)
    q = OnlineQueue(key="x", queue_length=12)
    q_big_batch = OnlineQueue(key="sample_idx", queue_length=3)  # batch (8) > queue (3)
    assert isinstance(q, QueueProvider)
    trainer = toy.trainer(tmp_path, [q, q_big_batch], max_epochs=1)
    trainer.fit(toy.Module(dim=6), toy.loader(x, y, batch_size=8))
    assert torch.equal(q.get_queue("x"), x[-12:])
    assert torch.equal(q_big_batch.get_queue("sample_idx"), torch.arange(37, 40))
    assert torch.equal(find_queue(trainer, "x"), x[-12:])


def test_forward_reads_queue_through_find_queue(toy, tmp_path):
    x, y = _data(n=24)

    class Reader(toy.Module):
        def training_step(self, batch, batch_idx):
            self.seen_queue_lengths.append(find_queue(self, "embedding").shape[0])
            return super().training_step(batch, batch_idx)

    module = Reader(dim=6)
    queue = OnlineQueue(key="embedding", queue_length=10, dim=6)
    toy.trainer(tmp_path, [queue]).fit(module, toy.loader(x, y, batch_size=4))
    # Read before the batch is queued: 0, 4, 8, then full at 10.
    assert module.seen_queue_lengths == [0, 4, 8, 10, 10, 10]
    assert queue.get_queue("embedding").shape == (10, 6)


def test_missing_key_lists_available_keys(toy, tmp_path):
    x, y = _data(n=8)
    trainer = toy.trainer(tmp_path, [OnlineQueue(key="feats", queue_length=4)])
    with pytest.raises(MissingKeyError) as info:
        trainer.fit(toy.Module(dim=6), toy.loader(x, y))
    msg = str(info.value)
    assert "'feats'" in msg
    assert "['embedding', 'label', 'loss']" in msg
    assert "['label', 'sample_idx', 'x']" in msg


def test_dim_mismatch_raises(toy, tmp_path):
    x, y = _data(n=8)
    trainer = toy.trainer(tmp_path, [OnlineQueue(key="embedding", queue_length=4, dim=5)])
    with pytest.raises(ValueError, match=r"\[8, 6\].*\[5\]"):
        trainer.fit(toy.Module(dim=6), toy.loader(x, y))


def test_consumers_share_one_buffer_sized_to_largest(toy, tmp_path):
    x, y = _data(n=40)
    small = OnlineQueue(key="embedding", queue_length=5)
    knn = OnlineKNN("knn", input="embedding", target="label", queue_length=16, k=3)
    monitor = RankMe("rank", input="embedding", queue_length=9)
    trainer = toy.trainer(tmp_path, [small, knn, monitor], limit_val_batches=0)
    module = toy.Module(dim=6, identity=True)
    trainer.fit(module, toy.loader(x, y))
    # The consumer with the smallest state_key ("OnlineKNN[knn]") owns the storage, wherever it
    # sits in the list; the others reference it.
    buffer = knn._shared["embedding"].buffer
    assert small._shared["embedding"].buffer is buffer is monitor._shared["embedding"].buffer
    assert buffer.length == 16
    assert knn._owned == {"embedding", "label"} and small._owned == monitor._owned == set()
    assert torch.equal(small.get_queue("embedding"), x[-5:])
    feats, labels = knn.bank()
    assert torch.equal(feats, x[-16:]) and torch.equal(labels, y[-16:])
    assert torch.equal(monitor._queue("embedding", 9), x[-9:])
    # Only the owner saves the rows.
    assert set(knn.state_dict()["queues"]) == {"embedding", "label"}
    assert small.state_dict()["queues"] == monitor.state_dict()["queues"] == {}


def test_conflicting_consumers_raise(toy, tmp_path):
    x, y = _data(n=8)
    callbacks = [
        OnlineQueue(key="label", queue_length=4, dtype=torch.int32),
        OnlineKNN("knn", input="embedding", target="label", queue_length=4, k=2),
    ]
    with pytest.raises(ValueError, match=r"sharing the queue 'label' disagree on dtype"):
        toy.trainer(tmp_path, callbacks).fit(toy.Module(dim=6), toy.loader(x, y))


def test_two_trainers_never_share_queues(toy, tmp_path):
    xa, ya = _data(n=16, seed=1)
    xb, yb = _data(n=16, seed=2)
    qa = OnlineQueue(key="x", queue_length=8)
    qb = OnlineQueue(key="x", queue_length=8)
    ta = toy.trainer(tmp_path / "a", [qa])
    tb = toy.trainer(tmp_path / "b", [qb])
    ta.fit(toy.Module(dim=6), toy.loader(xa, ya))
    tb.fit(toy.Module(dim=6), toy.loader(xb, yb))
    assert torch.equal(find_queue(ta, "x"), xa[-8:])
    assert torch.equal(find_queue(tb, "x"), xb[-8:])
    assert qa._shared["x"].buffer is not qb._shared["x"].buffer


def _fit(toy, tmp_path, max_epochs, ckpt_path=None, save_to=None):
    x, y = _data(n=36)
    pl.seed_everything(0)
    # Longer than an epoch (36 rows), so rows of the first epoch survive into the second.
    queues = [OnlineQueue(key="embedding", queue_length=50), OnlineQueue("sample_idx", 45)]
    knn = OnlineKNN("knn", input="embedding", target="label", queue_length=60, k=3)
    trainer = toy.trainer(tmp_path, [*queues, knn], max_epochs=max_epochs, limit_val_batches=0)
    trainer.fit(toy.Module(dim=6), toy.loader(x, y, batch_size=5), ckpt_path=ckpt_path)
    if save_to is not None:
        trainer.save_checkpoint(save_to)
    return queues, knn


def test_checkpoint_resume_restores_queues_exactly(toy, tmp_path):
    ckpt = tmp_path / "mid.ckpt"
    _fit(toy, tmp_path / "a", max_epochs=1, save_to=ckpt)
    resumed, knn_resumed = _fit(toy, tmp_path / "b", max_epochs=2, ckpt_path=str(ckpt))
    straight, knn_straight = _fit(toy, tmp_path / "c", max_epochs=2)
    expected_idx = torch.cat([torch.arange(27, 36), torch.arange(36)])
    assert torch.equal(resumed[1].get_queue("sample_idx"), expected_idx)
    for a, b in zip(resumed, straight, strict=True):
        assert torch.equal(a.get_queue(a.key), b.get_queue(b.key))
    for a, b in zip(knn_resumed.bank(), knn_straight.bank(), strict=True):
        assert torch.equal(a, b)
    # And a checkpoint of a resumed run restores the same rows in a fresh trainer.
    assert resumed[0].state_dict()["queues"] == {}  # the kNN owns (and saves) "embedding"
    state = {"queues": {"embedding": knn_resumed.state_dict()["queues"]["embedding"]}}
    fresh = OnlineQueue(key="embedding", queue_length=50)
    fresh.load_state_dict(state)
    toy.trainer(tmp_path / "d", [fresh], max_epochs=0).fit(
        toy.Module(dim=6), toy.loader(*_data(n=5))
    )
    assert torch.equal(fresh.get_queue("embedding"), straight[0].get_queue("embedding"))


def test_bad_arguments():
    with pytest.raises(ValueError, match="queue_length must be >= 1"):
        OnlineQueue("x", 0)
    with pytest.raises(ValueError, match="dim must be >= 1"):
        OnlineQueue("x", 4, dim=0)
    q = OnlineQueue("x", 4)
    with pytest.raises(RuntimeError, match="not set up yet"):
        q.get_queue("x")
