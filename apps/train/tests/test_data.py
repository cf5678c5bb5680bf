"""The app's in-memory loader (ssl-eval): sharding, per-epoch order; the DataModule's checks."""

import functools
import operator

import pytest
import torch

from ssl_data import TensorImageDataset
from ssl_train.data import DataModule, InMemoryLoader


def _dataset(n: int = 20) -> TensorImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return TensorImageDataset(images, torch.arange(n) % 3)


def _ids(loader: InMemoryLoader) -> list[list[int]]:
    return [b["sample_idx"].tolist() for b in loader]


def test_batches_are_tensor_gathers_with_labels() -> None:
    loader = InMemoryLoader(_dataset(), batch_size=8, shuffle=False, drop_last=False)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert batches[0]["image"].dtype == torch.uint8
    assert batches[0]["image"].shape == (8, 1, 2, 2)
    assert batches[2]["sample_idx"].tolist() == [16, 17, 18, 19]
    assert batches[1]["label"].tolist() == [i % 3 for i in range(8, 16)]


def test_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    a = InMemoryLoader(_dataset(), batch_size=5, shuffle=True, drop_last=True, seed=3)
    b = InMemoryLoader(_dataset(), batch_size=5, shuffle=True, drop_last=True, seed=3)
    first = _ids(a)
    assert first == _ids(b)
    assert sorted(functools.reduce(operator.iadd, first, [])) == list(range(20))
    a.sampler.set_epoch(1)
    assert _ids(a) != first
    b.sampler.set_epoch(1)
    assert _ids(a) == _ids(b)


def test_ranks_get_disjoint_equal_shares() -> None:
    shards = [
        InMemoryLoader(_dataset(21), batch_size=4, shuffle=True, seed=0, rank=r, world_size=2)
        for r in range(2)
    ]
    ids = [functools.reduce(operator.iadd, _ids(s), []) for s in shards]
    assert len(ids[0]) == len(ids[1]) == 10
    assert not set(ids[0]) & set(ids[1])


def test_skip_next_resumes_mid_epoch_once() -> None:
    loader = InMemoryLoader(_dataset(), batch_size=4, shuffle=True, seed=1)
    full = _ids(loader)
    loader.skip_next(3)
    assert _ids(loader) == full[3:]
    assert _ids(loader) == full


def test_limit_and_empty_loader_errors() -> None:
    loader = InMemoryLoader(_dataset(), batch_size=4, limit=8)
    assert sorted(functools.reduce(operator.iadd, _ids(loader), [])) == list(range(8))
    with pytest.raises(ValueError, match="lower the batch size"):
        InMemoryLoader(_dataset(), batch_size=32, drop_last=True)


def test_datamodule_rejects_unknown_split_keys() -> None:
    with pytest.raises(ValueError, match=r"data.train: unknown key\(s\) \['batchsize'\]"):
        DataModule(train={"dataset": _dataset(), "batchsize": 4})


def test_datamodule_train_loader_resumes_from_its_saved_state() -> None:
    """The DataModule's state holds the StatefulDataLoader position; a fresh DataModule that
    loads it yields exactly the batches the first one had not yielded yet (same epoch order)."""
    spec = {"dataset": _dataset(), "batch_size": 4, "shuffle": True, "num_workers": 0}
    dm = DataModule(train=spec, seed=5)
    loader = dm.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(2)
    it = iter(loader)
    seen = [next(it)["sample_idx"].tolist()]
    state = dm.state_dict()
    rest = [b["sample_idx"].tolist() for b in it]
    fresh = DataModule(train=dict(spec), seed=5)
    fresh.load_state_dict(state)
    assert [b["sample_idx"].tolist() for b in fresh.train_dataloader()] == rest
    flat = [i for ids in seen + rest for i in ids]
    assert len(seen) + len(rest) == 5 and sorted(flat) == list(range(20))
