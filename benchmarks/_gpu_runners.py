"""Our two runners: the hand-written PyTorch loop (the limit) and ssl_core.Module + Trainer.

Both train AdamW (lr 1e-3, weight decay 0.01; ours adds its default per-step cosine schedule)
on the same model, loss and on-device augmentation (:mod:`_gpu_recipes`). The timed window
runs from the end of step ``warmup`` to the end of the last step, with one GPU synchronisation
at each end only, so a sync-free step is timed as it runs.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from _gpu_recipes import (
    Setting,
    Variant,
    build_model,
    device,
    loss_attribute,
    our_augment,
    our_forward,
    seconds_per_call,
    synchronize,
    synthetic_images,
)
from torch.utils.data import DataLoader

import ssl_core
import ssl_data

COMPILED = ("backbone", "projector")


def make_loader(setting: Setting, total_steps: int, distinct_batches: int = 4) -> DataLoader:
    """uint8 batches of ``distinct_batches`` batches' worth of images, reshuffled each pass."""
    images = synthetic_images(setting, setting.batch_size * distinct_batches)
    dataset = ssl_data.TensorImageDataset(images, torch.zeros(len(images), dtype=torch.long))
    return DataLoader(
        dataset,
        batch_size=setting.batch_size,
        sampler=cycled_order(len(images), setting.batch_size * total_steps),
        drop_last=True,
        collate_fn=ssl_data.collate_batch,
        pin_memory=torch.cuda.is_available(),
    )


def cycled_order(n: int, total: int) -> list[int]:
    """``total`` indices, permutations of ``range(n)`` one after another (no repeat in a batch)."""
    g = torch.Generator().manual_seed(0)
    passes = -(-total // n)
    return torch.cat([torch.randperm(n, generator=g) for _ in range(passes)])[:total].tolist()


def compile_options(tiny: bool) -> dict[str, Any]:
    """``torch.compile`` options: inductor on a GPU; dynamo only (no C compiler) for ``--tiny``."""
    return {"backend": "eager"} if tiny else {}


def run_hand(setting: Setting, variant: Variant, warmup: int, steps: int, tiny: bool) -> dict:
    """The hand-written loop: to device, augment, forward, loss, backward, AdamW step."""
    dev = device()
    parts = build_model(setting)
    backbone, projector, loss_fn = (parts[k].to(dev) for k in ("backbone", "projector", "loss"))
    if variant.channels_last:
        backbone.to(memory_format=torch.channels_last)
    if variant.compile:
        backbone.compile(**compile_options(tiny))
        projector.compile(**compile_options(tiny))
    augment = our_augment(setting)
    params = [*backbone.parameters(), *projector.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    loader = make_loader(setting, warmup + steps)
    start = end = None
    loss = torch.zeros(())
    for i, batch in enumerate(loader):
        batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
        image = augment(batch)["image"]  # view-major: [view 0 of every sample, view 1 ...]
        if variant.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=variant.bf16):
            z0, z1 = projector(backbone(image)).chunk(2)
            loss = loss_fn(z0, z1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i + 1 == warmup:
            synchronize()
            start = time.perf_counter()
    synchronize()
    end = time.perf_counter()
    return _row(setting, steps, start, end, float(loss))


class _Window(L.Callback):
    """Wall time from the end of step ``warmup`` to the end of training (two syncs in all)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            synchronize()
            self.start = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, *args: Any) -> None:
        synchronize()
        self.end = time.perf_counter()


class _SyncDebug(L.Callback):
    """Turn ``torch.cuda.set_sync_debug_mode("error")`` on after the first (check) batches."""

    def __init__(self, after: int) -> None:
        self.after = after

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.after:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_end(self, trainer: L.Trainer, *args: Any) -> None:
        torch.cuda.set_sync_debug_mode(0)


def make_module(setting: Setting, variant: Variant, tiny: bool) -> ssl_core.Module:
    """ssl_core.Module with the setting's forward and the same parts as the hand loop."""
    parts = build_model(setting)
    compile_modules = None
    if variant.compile:
        compile_modules = {name: compile_options(tiny) for name in COMPILED}
    return ssl_core.Module(
        forward=our_forward(setting),
        backbone=parts["backbone"],
        projector=parts["projector"],
        batch_transforms={"train": our_augment(setting)},
        channels_last=variant.channels_last,
        compile_modules=compile_modules,
        **{loss_attribute(setting): parts["loss"]},
    )


def run_ours(
    setting: Setting,
    variant: Variant,
    warmup: int,
    steps: int,
    tiny: bool,
    sync_debug: bool = False,
) -> dict:
    """ssl_core.Module + Lightning Trainer (no logger, no progress bar, default log interval).

    With ``sync_debug`` (CUDA only) every host synchronisation after step ``warmup`` raises,
    so the run fails unless the steps are sync-free; ``log_every_n_steps`` is set past the
    run so that no check point falls inside it.
    """
    window = _Window(warmup)
    callbacks: list[L.Callback] = [window]
    if sync_debug:
        callbacks.append(_SyncDebug(warmup))
    trainer = L.Trainer(
        accelerator="auto",
        devices=1,
        precision=variant.precision,
        max_steps=warmup + steps,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=10 * (warmup + steps) if sync_debug else 50,
        callbacks=callbacks,
    )
    module = make_module(setting, variant, tiny)
    trainer.fit(module, train_dataloaders=make_loader(setting, warmup + steps))
    loss = trainer.callback_metrics.get("train/loss", torch.tensor(float("nan")))
    return _row(setting, steps, window.start, window.end, float(loss))


def augmentation_seconds(setting: Setting, repeats: int) -> float:
    """Seconds per batch of our on-device augmentation alone (uint8 in, two float views out)."""
    augment = our_augment(setting)
    image = synthetic_images(setting, setting.batch_size).to(device())
    batch = {"image": image, "sample_idx": torch.arange(setting.batch_size, device=device())}
    return seconds_per_call(lambda: augment(dict(batch)), warmup=2, repeats=repeats)


def _row(setting: Setting, steps: int, start: float | None, end: float | None, loss: float):
    if start is None or end is None or end <= start:
        raise RuntimeError(f"no timed steps (steps={steps}); raise --steps")
    seconds = (end - start) / steps
    return {
        "images_per_s": setting.batch_size / seconds,
        "ms_per_step": 1e3 * seconds,
        "timed_steps": steps,
        "loss": loss,
    }
