"""Run by test_ddp.py: 2-process gloo DDP fit; each rank dumps its queues and metrics as JSON."""

import json
import os
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssl_callbacks import OnlineKNN, OnlineProbe, OnlineQueue


class Rows(Dataset):
    def __init__(self, x, label):
        self.x, self.label = x, label

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "label": self.label[i], "sample_idx": torch.tensor(i)}


class Identity(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.seen = []  # sample_idx of each training batch on this rank

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["sample_idx"].tolist())
        return {"loss": self.dummy.pow(2) + 0 * batch["x"].sum(), "embedding": batch["x"]}

    def validation_step(self, batch, batch_idx):
        return {"embedding": batch["x"]}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randint(0, 4, (n,), generator=g)


def main(out_dir: Path) -> None:
    xt, yt = data(32, 0)
    xv, yv = data(20, 1)
    queue = OnlineQueue("sample_idx", queue_length=12, gather_distributed=True)
    local = OnlineQueue("x", queue_length=100)  # not gathered
    knn = OnlineKNN("knn", "embedding", "label", queue_length=16, k=3, num_classes=4)
    torch.manual_seed(100 + int(os.environ.get("LOCAL_RANK", 0)))  # ranks start different
    probe = OnlineProbe(
        "probe",
        "embedding",
        "label",
        probe=nn.Linear(6, 4),
        optimizer=lambda params: torch.optim.AdamW(params, lr=0.05),
    )
    trainer = pl.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[queue, local, knn, probe],
    )
    module = Identity()
    trainer.fit(
        module,
        DataLoader(Rows(xt, yt), batch_size=4),
        DataLoader(Rows(xv, yv), batch_size=5),
    )
    feats, labels = knn.bank()
    result = {
        "seen": module.seen,
        "queue": queue.get_queue("sample_idx").tolist(),
        "local_rows": local.get_queue("x").shape[0],
        "bank": feats.tolist(),
        "bank_labels": labels.tolist(),
        "top1": float(trainer.callback_metrics["val/knn_top1"]),
        "world_size": trainer.world_size,
        "probe": {k: v.tolist() for k, v in probe.probe.state_dict().items()},
        "probe_top1": float(trainer.callback_metrics["val/probe_top1"]),
    }
    ckpt = out_dir / "run.ckpt"
    trainer.save_checkpoint(ckpt)  # written by rank 0 only
    (out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(result))
    # Lightning leaves the process group alive; gloo's threads then race interpreter exit and
    # abort the process ("terminate called without an active exception") now and then.
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
