"""A tiny dict dataset, regression forward, Module and Trainer factories for the Module tests."""

import types

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssl_core import Module


class DictData(Dataset):
    def __init__(self, n=16, dim=6, classes=3, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i], "sample_idx": torch.tensor(i)}


def regression_forward(self, batch, stage):
    emb = self.backbone(batch["image"])
    out = {"embedding": emb, "label": batch["label"], "logits": self.head(emb)}
    if stage == "train":
        out["loss"] = nn.functional.cross_entropy(out["logits"], batch["label"])
        out["aux"] = emb.pow(2).mean()
    return out


def make_module(**kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("forward", regression_forward)
    kwargs.setdefault("backbone", nn.Linear(6, 4))
    kwargs.setdefault("head", nn.Linear(4, 3))
    return Module(**kwargs)


def trainer(**kwargs):
    kwargs.setdefault("max_steps", 2)
    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_checkpointing", False)
    return L.Trainer(
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def loader(n=16, batch_size=4, **kwargs):
    return DataLoader(DictData(n, **kwargs), batch_size=batch_size)


@pytest.fixture
def kit():
    """The factories as one namespace: ``kit.module()``, ``kit.trainer()``, ``kit.loader()``."""
    return types.SimpleNamespace(
        DictData=DictData,
        regression_forward=regression_forward,
        module=make_module,
        trainer=trainer,
        loader=loader,
    )
