"""Small plain LightningModules and data for the callback tests (no ssl_core.Module needed)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class DictDataset(Dataset):
    """Rows of ``x`` [N, D] and ``label`` [N], plus ``sample_idx``."""

    def __init__(self, x: torch.Tensor, label: torch.Tensor) -> None:
        self.x, self.label = x, label

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.x[i], "label": self.label[i], "sample_idx": torch.tensor(i)}


class ToyModule(pl.LightningModule):
    """``embedding = backbone(x)`` (identity-initialised linear when ``identity``)."""

    def __init__(self, dim: int = 8, out: int | None = None, identity: bool = False, lr=0.05):
        super().__init__()
        self.backbone = nn.Linear(dim, out or dim, bias=not identity)
        if identity:
            with torch.no_grad():
                self.backbone.weight.copy_(torch.eye(out or dim, dim))
            self.backbone.weight.requires_grad_(False)
            self.dummy = nn.Parameter(torch.zeros(()))  # something for the optimiser
        self.lr = lr
        self.seen_queue_lengths: list[int] = []

    def forward(self, batch: dict[str, Any], stage: str) -> dict[str, Any]:
        emb = self.backbone(batch["x"])
        out = {"embedding": emb, "label": batch["label"]}
        loss = emb.pow(2).mean()
        if hasattr(self, "dummy"):
            loss = loss + self.dummy.pow(2)
        out["loss"] = loss
        return out

    def training_step(self, batch, batch_idx):
        return self(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self(batch, "val")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def make_loader(x, label, batch_size=8, shuffle=False):
    return DataLoader(DictDataset(x, label), batch_size=batch_size, shuffle=shuffle)


def make_trainer(tmp_path, callbacks, max_epochs=1, **kwargs):
    defaults = dict(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(tmp_path),
    )
    defaults.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **defaults)


@pytest.fixture
def toy():
    return SimpleNamespace(Module=ToyModule, loader=make_loader, trainer=make_trainer)
