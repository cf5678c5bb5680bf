"""The peers on the same recipe: stable-pretraining 0.1.8 and lightly 1.6.0, each its own way.

Both get the model of :func:`_gpu_recipes.build_model` (same backbone and projector weights)
and the setting's augmentation parameters; the loss and the training step are the peer's own:

- stable-pretraining: ``spt.Module`` with its forward (``spt.forward.simclr`` /
  ``barlow_twins``) and loss, its kornia GPU augmentation (``StackedMultiView`` of a
  ``GPUCompose`` chain, attached to the dataset as its ``gpu_transform``), Lightning Trainer;
- lightly: a LightningModule as in lightly's examples, its loss, and its per-sample CPU
  augmentation (``SimCLRTransform``) in DataLoader worker processes.

Channels-last and ``torch.compile`` are applied by hand (neither peer has a switch for them).
A peer that is not installed, or fails, is reported as skipped with the reason.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from _gpu_recipes import MEAN, STD, Setting, Variant, build_model, synchronize, synthetic_images
from _gpu_runners import _row, _Window, compile_options, cycled_order, make_loader
from torch import nn
from torch.utils.data import DataLoader, Dataset

PEERS = {"stable-pretraining": "0.1.8", "lightly": "1.6.0"}


def peer_missing(name: str) -> str | None:
    """Why the peer cannot run (not installed, another version), or ``None``.

    Read from the installed distribution, not the import name (another package may provide a
    module of that name).
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version(name)
    except PackageNotFoundError:
        return f"{name} is not installed (benchmarks/fetch_gpu_wheels.sh, gpu_notes.md)"
    return None if found == PEERS[name] else f"{name} {found} installed, {PEERS[name]} wanted"


def _trainer(variant: Variant, total: int, window: _Window) -> L.Trainer:
    return L.Trainer(
        accelerator="auto",
        devices=1,
        precision=variant.precision,
        max_steps=total,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[window],
    )


def _speed_switches(parts: dict[str, nn.Module], variant: Variant, tiny: bool) -> None:
    if variant.channels_last:
        parts["backbone"].to(memory_format=torch.channels_last)
    if variant.compile:
        parts["backbone"].compile(**compile_options(tiny))
        parts["projector"].compile(**compile_options(tiny))


class _ToFloat(nn.Module):
    """uint8 ``[0, 255]`` to float ``[0, 1]`` (kornia works on floats), channels-last if asked."""

    def __init__(self, channels_last: bool) -> None:
        super().__init__()
        self.channels_last = channels_last

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        image = batch["image"].float().div_(255)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        batch["image"] = image
        return batch


def spt_augment(setting: Setting, channels_last: bool = False) -> nn.Module:
    """stable-pretraining's GPU recipe for the setting (kornia ops, compiled on CUDA)."""
    from stable_pretraining.data import gpu_transforms as G

    b, c, s, h = setting.jitter()
    chain = G.GPUCompose(
        [
            _ToFloat(channels_last),
            G.GPURandomResizedCrop(setting.image_size, scale=(0.08, 1.0)),
            G.GPURandomHorizontalFlip(p=0.5),
            G.GPUColorJitter(b, c, s, h, p=0.8),
            G.GPURandomGrayscale(p=0.2),
            G.GPUGaussianBlur(setting.blur_kernel, p=0.5 if setting.blur else 0.0),
            G.GPUNormalize(MEAN, STD),
        ]
    )
    return G.StackedMultiView(chain, n_views=2)


def run_spt(setting: Setting, variant: Variant, warmup: int, steps: int, tiny: bool) -> dict:
    """stable-pretraining: spt.Module + its forward, loss and GPU augmentation."""
    import stable_pretraining as spt
    from stable_pretraining import forward as spt_forward

    parts = build_model(setting)
    _speed_switches(parts, variant, tiny)
    if setting.method == "simclr":
        losses = {"simclr_loss": spt.losses.NTXEntLoss(temperature=0.2)}
        forward = spt_forward.simclr
    else:
        losses = {"barlow_loss": spt.losses.BarlowTwinsLoss(lambda_coeff=5e-3)}
        forward = spt_forward.barlow_twins
    module = spt.Module(
        forward=forward,
        backbone=parts["backbone"],
        projector=parts["projector"],
        optim={"optimizer": {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.01}},
        **losses,
    )
    loader = make_loader(setting, warmup + steps)
    loader.dataset.gpu_transform = spt_augment(setting, variant.channels_last)
    window = _Window(warmup)
    trainer = _trainer(variant, warmup + steps, window)
    trainer.fit(module, train_dataloaders=loader)
    loss = trainer.callback_metrics.get(
        "train/loss_step", trainer.callback_metrics.get("train/loss")
    )
    return _row(
        setting, steps, window.start, window.end, float("nan") if loss is None else float(loss)
    )


class _PILDataset(Dataset):
    """uint8 images as PIL images through a per-sample transform, as lightly's examples do."""

    def __init__(self, images: torch.Tensor, transform: Any) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from torchvision.transforms.functional import to_pil_image

        return self.transform(to_pil_image(self.images[i])), 0


class _LightlyModel(L.LightningModule):
    """The LightningModule of lightly's examples: two views, projector, lightly's loss."""

    def __init__(self, parts: dict[str, nn.Module], criterion: nn.Module, cl: bool) -> None:
        super().__init__()
        self.backbone, self.projector, self.criterion = (
            parts["backbone"],
            parts["projector"],
            criterion,
        )
        self.cl = cl

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x0, x1 = batch[0]
        if self.cl:
            x0, x1 = (x.contiguous(memory_format=torch.channels_last) for x in (x0, x1))
        loss = self.criterion(self.projector(self.backbone(x0)), self.projector(self.backbone(x1)))
        self.log("train_loss_ssl", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3, weight_decay=0.01)


def run_lightly(
    setting: Setting, variant: Variant, warmup: int, steps: int, tiny: bool, workers: int
) -> dict:
    """lightly: its loss and per-sample CPU transform in ``workers`` DataLoader processes."""
    from lightly.loss import BarlowTwinsLoss, NTXentLoss
    from lightly.transforms import SimCLRTransform

    parts = build_model(setting)
    _speed_switches(parts, variant, tiny)
    criterion = NTXentLoss(temperature=0.2) if setting.method == "simclr" else BarlowTwinsLoss()
    transform = SimCLRTransform(
        input_size=setting.image_size,
        cj_strength=setting.jitter_strength,
        min_scale=0.08,
        gaussian_blur=0.5 if setting.blur else 0.0,
        normalize={"mean": list(MEAN), "std": list(STD)},
    )
    total = warmup + steps
    images = synthetic_images(setting, setting.batch_size * 4)
    dataset = _PILDataset(images, transform)
    loader = DataLoader(
        dataset,
        batch_size=setting.batch_size,
        sampler=cycled_order(len(dataset), setting.batch_size * total),
        drop_last=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
    window = _Window(warmup)
    trainer = _trainer(variant, total, window)
    model = _LightlyModel(parts, criterion, variant.channels_last)
    trainer.fit(model, train_dataloaders=loader)
    loss = trainer.callback_metrics.get("train_loss_ssl")
    return _row(
        setting, steps, window.start, window.end, float("nan") if loss is None else float(loss)
    )


def spt_augmentation_seconds(setting: Setting, repeats: int) -> float:
    """Seconds per batch of stable-pretraining's GPU augmentation alone (as in its step)."""
    augment = spt_augment(setting).to(_device())
    image = synthetic_images(setting, setting.batch_size).to(_device())
    for _ in range(2):
        augment({"image": image.clone()})
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        augment({"image": image.clone()})
    synchronize()
    return (time.perf_counter() - start) / repeats


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
