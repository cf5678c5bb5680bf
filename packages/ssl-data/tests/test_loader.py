"""Rank sharding, loader settings, the in-memory path through the DataModule, and precedence of
the module's batch_transforms (the escape hatch)."""

import logging

import pytest
import torch

import ssl_data
from ssl_data import ShardSampler, TensorImageDataset, make_loader, presets


def _dataset(n: int = 21) -> TensorImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 8, 8).contiguous()
    return TensorImageDataset(images, torch.arange(n) % 3)


def test_ranks_read_disjoint_equal_shards_of_the_epoch_order() -> None:
    shards = []
    for rank in range(2):
        s = ShardSampler(21, shuffle=True, seed=4, rank=rank, world_size=2)
        s.set_epoch(3)
        shards.append(list(s))
    order = torch.randperm(21, generator=torch.Generator().manual_seed(4 + 3)).tolist()
    assert len(shards[0]) == len(shards[1]) == 10
    assert not set(shards[0]) & set(shards[1])  # no sample twice in an epoch
    assert sorted(shards[0] + shards[1]) == sorted(order[:20])
    assert shards[0] == order[:20:2] and shards[1] == order[1:20:2]
    s.set_epoch(4)
    assert list(s) != shards[1]  # reshuffled each epoch


def test_loader_settings_are_honoured_and_checked() -> None:
    loader = make_loader(_dataset(), 4, num_workers=2, prefetch_factor=3, pin_memory=False)
    assert loader.num_workers == 2 and loader.prefetch_factor == 3
    assert loader.persistent_workers and not loader.pin_memory
    ids = sorted(i for b in loader for i in b["sample_idx"].tolist())
    assert ids == list(range(21))
    assert make_loader(_dataset(), 4).num_workers == 0  # in-memory: a gather in-process
    with pytest.raises(ValueError, match="need num_workers > 0"):
        make_loader(_dataset(), 4, num_workers=0, persistent_workers=True)
    with pytest.raises(ValueError, match="lower the batch size"):
        make_loader(_dataset(), 32, drop_last=True)


def test_limit_reads_only_the_first_samples_in_batches_of_one_gather() -> None:
    loader = make_loader(_dataset(), 4, shuffle=True, seed=2, limit=10)
    batches = list(loader)
    assert [len(b["sample_idx"]) for b in batches] == [4, 4, 2]
    assert sorted(i for b in batches for i in b["sample_idx"].tolist()) == list(range(10))
    assert batches[0]["image"].dtype == torch.uint8 and batches[0]["image"].shape == (4, 1, 8, 8)
    assert batches[0]["label"].tolist() == [i % 3 for i in batches[0]["sample_idx"].tolist()]
    with pytest.raises(ValueError, match="limit must be >= 1"):
        make_loader(_dataset(), 4, limit=0)


def test_in_memory_path_runs_the_whole_recipe_batched() -> None:
    views = presets.simclr_views(8, mean=(0.5,), std=(0.5,), seed=1)
    dm = ssl_data.DataModule(
        train={"dataset": _dataset(), "batch_size": 4},
        val={"dataset": _dataset(), "batch_size": 8},
        views=views,
        image_size=8,
        mean=(0.5,),
        std=(0.5,),
    )
    raw = next(iter(dm.train_dataloader()))
    out = dm.transform_batch(raw, "train")
    reference = presets.simclr_views(8, mean=(0.5,), std=(0.5,), seed=1)(raw)
    assert torch.equal(out["image"], reference["image"]) and out["image"].shape == (8, 1, 8, 8)
    val = dm.transform_batch(next(iter(dm.val_dataloader())), "val")
    expected = (torch.arange(8).float().view(8, 1, 1, 1) / 255 - 0.5) / 0.5
    assert val["image"].shape == (8, 1, 8, 8) and torch.allclose(
        val["image"][:, :, :1, :1], expected
    )


def test_module_batch_transforms_take_precedence_and_are_said(caplog) -> None:
    class Trainer:
        lightning_module = type("M", (), {"_batch_transforms": {"train": lambda b: b}})()
        global_rank, world_size = 0, 1

    dm = ssl_data.DataModule(
        train={"dataset": _dataset(), "batch_size": 4}, views=presets.simclr_views(8), image_size=8
    )
    dm.trainer = Trainer()
    with caplog.at_level(logging.INFO, logger="ssl_data"):
        dm.setup("fit")
    assert any("replaces data.views" in r.getMessage() for r in caplog.records)
    raw = next(iter(dm.train_dataloader()))
    assert dm.transform_batch(raw, "train")["image"].dtype == torch.uint8  # left to the module
