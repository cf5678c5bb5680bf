"""The custom forward of the public stable-ssl docs, run end to end for 2 steps on CPU."""

import copy

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssl_core import Module
from ssl_core.backbone import MLP, SmallResNet

ssl_data = pytest.importorskip("ssl_data")
ssl_losses = pytest.importorskip("ssl_losses")


def forward(self, batch, stage):
    out = {}
    out["embedding"] = self.backbone(batch["image"])
    if self.training:
        proj = self.projector(out["embedding"])
        views = ssl_data.fold_views(proj, batch["sample_idx"])
        out["loss"] = self.simclr_loss(views[0], views[1])
    return out


class Images(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"image": torch.rand(3, 16, 16, generator=g), "sample_idx": torch.tensor(i)}


class TwoViews:
    """Flat, view-major two-view batch: rows v*N + n are view v of sample n."""

    def __init__(self):
        self.generator = torch.Generator().manual_seed(0)

    def __call__(self, batch):
        x = batch["image"]
        views = [x + 0.1 * torch.randn(x.shape, generator=self.generator) for _ in range(2)]
        return {"image": torch.cat(views), "sample_idx": batch["sample_idx"].repeat(2)}


class Capture(L.Callback):
    def __init__(self):
        self.outputs, self.batches = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.outputs.append(outputs)
        self.batches.append(batch)


def test_stable_ssl_docs_forward_trains_two_steps():
    torch.manual_seed(0)
    module = Module(
        forward=forward,
        backbone=SmallResNet(widths=(8, 16)),
        projector=MLP(16, 32, 8),
        simclr_loss=ssl_losses.NTXEntLoss(temperature=0.5),
        batch_transforms=TwoViews(),
        optim={
            "optimizer": {"type": "LARS", "lr": 0.1},
            "scheduler": {"type": "LinearWarmupCosineAnnealingLR", "warmup_steps": 1},
        },
    )
    initial = copy.deepcopy(module)
    before = module.backbone.stem[0].weight.detach().clone()
    cap = Capture()
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[cap],
    )
    trainer.fit(module, DataLoader(Images(), batch_size=4))
    assert trainer.global_step == 2
    assert not torch.equal(module.backbone.stem[0].weight, before)
    out, batch = cap.outputs[0], cap.batches[0]
    assert out["embedding"].shape == (8, 16) and batch["image"].shape == (8, 3, 16, 16)
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    assert {"train/loss", "train/loss_epoch"} <= set(trainer.logged_metrics)
    # step 0's loss is NT-Xent of the two views of each sample, written out by hand
    initial.train()
    z = nn.functional.normalize(initial.projector(initial.backbone(batch["image"])), dim=1)
    n = 4  # view-major batch: row n and row n + 4 are the two views of sample n
    sim = z @ z.T / 0.5
    sim.fill_diagonal_(float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    expected = nn.functional.cross_entropy(sim, positives)
    torch.testing.assert_close(out["loss"], expected.detach(), atol=1e-5, rtol=1e-5)
