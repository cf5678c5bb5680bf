"""DDP on CPU (gloo, 2 forked processes): a Module trains like one process holding both batches."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssl_core import Module


class Regression(Dataset):
    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 5, generator=g)
        self.y = torch.randn(16, 2, generator=g)

    def __len__(self):
        return 16

    def __getitem__(self, i):
        return {"image": self.x[i], "target": self.y[i]}


def forward(self, batch, stage):
    pred = self.head(torch.tanh(self.backbone(batch["image"])))
    return {"loss": nn.functional.mse_loss(pred, batch["target"])}


def make():
    torch.manual_seed(0)
    return Module(
        forward=forward,
        backbone=nn.Linear(5, 4),
        head=nn.Linear(4, 2),
        optim={"optimizer": {"type": "SGD", "lr": 0.5}, "scheduler": None},
    )


def fit(module, batch_size, **kwargs):
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )
    # one batch per rank: rank r gets rows r, r+2, ... (DistributedSampler without shuffling)
    trainer.fit(module, DataLoader(Regression(), batch_size=batch_size, shuffle=False))
    return trainer


@pytest.mark.ddp
@pytest.mark.slow
def test_ddp_two_processes_match_single_process_full_batch():
    ddp = make()
    trainer = fit(ddp, batch_size=8, strategy="ddp_fork", devices=2)
    single = make()
    fit(single, batch_size=16, devices=1)
    # DDP averages the gradients of the two half-batches = the gradient of the full batch's mean
    for a, b in zip(ddp.parameters(), single.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # train/loss_epoch is synced: the mean of both ranks' losses = the full-batch loss
    assert "train/loss_epoch" in trainer.callback_metrics
