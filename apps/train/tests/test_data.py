"""The DataModule as the app names it (ssl_train.data.DataModule): its checks and resume."""

import pytest
import torch

from ssl_data import TensorImageDataset
from ssl_train.data import DataModule


def _dataset(n: int = 20) -> TensorImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return TensorImageDataset(images, torch.arange(n) % 3)


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
