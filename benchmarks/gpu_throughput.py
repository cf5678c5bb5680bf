"""SimCLR training throughput on a GPU: precision, channels-last, compile, where augmentation runs.

Two settings, each trained with ``ssl_core.Module`` + Lightning's ``Trainer`` on synthetic uint8
images held in memory (no disk I/O):

- ResNet-18 (low-resolution stem) at 32 px, batch 512 (CIFAR-style);
- ResNet-50 at 224 px, batch 128 (ImageNet-style).

Variants per setting (``ratio`` is against the ``fp32`` row of the same setting):

- ``fp32``: 32-bit, batched augmentation on the device (``ssl_data.presets.simclr_views`` in
  ``Module(batch_transforms=...)``);
- ``bf16-mixed``: Lightning's ``precision="bf16-mixed"``;
- ``bf16 + channels_last``: plus ``Module(channels_last=True)``;
- ``bf16 + channels_last + compile``: plus ``compile_modules=["backbone", "projector"]``
  (``--no-compile`` skips it);
- ``bf16 + channels_last, worker aug``: the same model, but the two views are made per sample by
  torchvision v2 (``ssl_data.presets.torchvision_simclr``) in ``--workers`` DataLoader worker
  processes (pinned memory), as in most SSL code bases, instead of batched on the device.

Images/s counts source images (each gives two views), timed on the wall clock from the end of
the last warm-up step to the end of the last timed step (data loading, augmentation, forward,
backward, optimiser step; CUDA synchronised), so compilation and worker start-up are excluded.

    uv run python benchmarks/gpu_throughput.py               # on a GPU machine
    uv run python benchmarks/gpu_throughput.py --tiny        # CPU smoke run: ResNet-18, 32 px,
                                                             # batch 16, 2 steps per variant

Prints a table and writes ``benchmarks/results/gpu_throughput.json`` (``--tiny``:
``outputs/gpu_throughput_tiny.json``, outside the committed results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from _step_clock import StepClock
from torch.utils.data import DataLoader

import ssl_core
import ssl_data
import ssl_forwards
import ssl_losses

RESULTS = Path(__file__).parent / "results"
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class Setting:
    """One model / image size / batch size combination."""

    name: str
    model: str
    low_resolution: bool
    image_size: int
    batch_size: int


@dataclass(frozen=True)
class Variant:
    """One speed switch combination."""

    name: str
    precision: str
    channels_last: bool = False
    compile: bool = False
    worker_aug: bool = False


SETTINGS = [
    Setting("resnet18 @ 32 px", "resnet18", True, 32, 512),
    Setting("resnet50 @ 224 px", "resnet50", False, 224, 128),
]
TINY_SETTINGS = [Setting("resnet18 @ 32 px (tiny)", "resnet18", True, 32, 16)]
VARIANTS = [
    Variant("fp32", "32-true"),
    Variant("bf16-mixed", "bf16-mixed"),
    Variant("bf16 + channels_last", "bf16-mixed", channels_last=True),
    Variant("bf16 + channels_last + compile", "bf16-mixed", channels_last=True, compile=True),
    Variant("bf16 + channels_last, worker aug", "bf16-mixed", channels_last=True, worker_aug=True),
]


def make_module(setting: Setting, variant: Variant) -> ssl_core.Module:
    """SimCLR: torchvision ResNet backbone, 2-layer projector to 128, NT-Xent (T=0.2)."""
    backbone = ssl_core.backbone.from_torchvision(
        setting.model, low_resolution=setting.low_resolution
    )
    width = backbone.out_features
    transforms: dict[str, Any] | None = None
    if not variant.worker_aug:
        transforms = {"train": ssl_data.presets.simclr_views(setting.image_size, 2, MEAN, STD)}
    return ssl_core.Module(
        forward=ssl_forwards.simclr_forward,
        backbone=backbone,
        projector=ssl_core.backbone.MLP(width, 2048, 128),
        simclr_loss=ssl_losses.NTXEntLoss(temperature=0.2),
        batch_transforms=transforms,
        channels_last=variant.channels_last,
        compile_modules=["backbone", "projector"] if variant.compile else None,
    )


def make_loader(
    images: torch.Tensor, setting: Setting, variant: Variant, workers: int
) -> DataLoader:
    """Batches of uint8 images (batched augmentation later) or per-sample augmented views."""
    labels = torch.zeros(images.shape[0], dtype=torch.long)
    dataset = ssl_data.TensorImageDataset(images, labels)
    collate = ssl_data.collate_batch
    if variant.worker_aug:  # two torchvision views per sample, made in the workers
        transform = ssl_data.presets.torchvision_simclr(setting.image_size, 2, MEAN, STD)
        dataset = ssl_data.DictDataset(dataset, transform=transform)
        collate = ssl_data.collate_views
    else:  # uint8 batches, augmented on the device by the module
        workers = 0
    return DataLoader(
        dataset,
        batch_size=setting.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def measure(
    setting: Setting, variant: Variant, warmup: int, steps: int, workers: int
) -> dict[str, Any]:
    """Train ``warmup + steps`` steps and return the timed throughput."""
    torch.manual_seed(0)
    total = warmup + steps
    g = torch.Generator().manual_seed(0)
    size = setting.image_size
    images = torch.randint(0, 256, (setting.batch_size * total, 3, size, size), generator=g)
    images = images.to(torch.uint8)
    clock = StepClock(warmup)
    trainer = L.Trainer(
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
        callbacks=[clock],
    )
    module = make_module(setting, variant)
    loader = make_loader(images, setting, variant, workers)
    start = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    wall = time.perf_counter() - start
    seconds = clock.seconds
    if seconds is None:
        raise RuntimeError(f"{variant.name}: no timed step ran (warmup={warmup}, steps={steps}).")
    row = {
        "setting": setting.name,
        "variant": variant.name,
        "batch_size": setting.batch_size,
        "image_size": size,
        "timed_steps": clock.steps,
        "images_per_s": clock.steps * setting.batch_size / seconds,
        "ms_per_step": 1e3 * seconds / clock.steps,
        "wall_s_including_warmup": wall,
        "loss": float(trainer.callback_metrics.get("train/loss", float("nan"))),
    }
    if torch.cuda.is_available():
        row["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    return row


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the rows with their ratio to the fp32 row of the same setting."""
    print(f"{'setting':<26} {'variant':<34} {'images/s':>10} {'ms/step':>9} {'vs fp32':>8}")
    for r in rows:
        ratio = f"{r['ratio_vs_fp32']:.2f}x" if r.get("ratio_vs_fp32") else "-"
        print(
            f"{r['setting']:<26} {r['variant']:<34} {r.get('images_per_s', float('nan')):>10.1f} "
            f"{r.get('ms_per_step', float('nan')):>9.1f} {ratio:>8}"
            + (f"  ({r['error']})" if "error" in r else "")
        )


def main() -> None:
    """Run every variant of every setting, print the table, write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: r18 32 px batch 16")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 5)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 20)")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--no-compile", action="store_true", help="skip the compile variant")
    parser.add_argument("--compile", action="store_true", help="with --tiny: keep compile")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    settings = TINY_SETTINGS if args.tiny else SETTINGS
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    steps = args.steps if args.steps is not None else (2 if args.tiny else 20)
    skip_compile = args.no_compile or (args.tiny and not args.compile)
    variants = [v for v in VARIANTS if not (v.compile and skip_compile)]
    if not args.tiny and not torch.cuda.is_available():
        print("No CUDA device: this measures the CPU (use --tiny for a quick check).")
    rows: list[dict[str, Any]] = []
    for setting in settings:
        base = None
        for variant in variants:
            try:
                row = measure(setting, variant, warmup, steps, args.workers)
            except Exception as err:  # record e.g. a compile failure and go on
                row = {"setting": setting.name, "variant": variant.name, "error": repr(err)}
            if variant.name == "fp32" and "images_per_s" in row:
                base = row["images_per_s"]
            if base and "images_per_s" in row:
                row["ratio_vs_fp32"] = row["images_per_s"] / base
            rows.append(row)
            print_table([row])
    print()
    print_table(rows)
    # A tiny CPU run only checks the script: its numbers stay out of benchmarks/results/.
    tiny_out = RESULTS.parents[1] / "outputs" / "gpu_throughput_tiny.json"
    out = args.out or (tiny_out if args.tiny else RESULTS / "gpu_throughput.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "gpu_throughput",
        "work": "SimCLR (NT-Xent T=0.2, projector 2048-128), synthetic uint8 images in memory",
        "tiny": args.tiny,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "workers": args.workers,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "lightning": L.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": rows,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
