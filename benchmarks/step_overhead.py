"""Overhead of ssl_core.Module + Lightning Trainer over a hand-written PyTorch training loop.

Work per step (identical in every variant, on the same pre-built batches): a SimCLR step on CPU,
SmallResNet backbone + MLP projector, flat two-view batch of 256 images (128 samples x 2 views)
at 32x32, NT-Xent loss, AdamW, cosine schedule stepped per step. Augmentation is excluded (the
batches are built once) so that only the framework's cost differs.

Variants, timed in the same process and interleaved round by round:
  * ``loop``: zero_grad / forward / backward / step / scheduler.step written by hand.
  * ``module_lean``: Module + Trainer with progress bar, logger, checkpointing and model summary
    off (what a user does in a benchmark or a sweep).
  * ``module_default``: Module + Trainer with Lightning's defaults (progress bar, default logger
    writing every 50 steps, end-of-run checkpoint).

Throughput is measured both in wall time and in process CPU time (``time.process_time``; with
one intra-op thread, the default here, it counts the work done and is robust to other processes
sharing the cores, which make wall times swing by 5x on a busy machine). It is taken on
steady-state steps (after warm-up steps, from the start of the first
timed step to the end of the last). Each variant reports the median and the best round; on a
machine shared with other work the best round is the better estimate of the intrinsic cost.
The per-step losses of every variant are compared with the loop's (same work, same numbers).

Usage: ``uv run python benchmarks/step_overhead.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import DataLoader

from ssl_core import Module
from ssl_core.backbone import MLP, SmallResNet

RESULTS = Path(__file__).parent / "results" / "step_overhead.json"
SAMPLES, VIEWS, SIZE = 128, 2, 32


def nt_xent(z: torch.Tensor, n: int, temperature: float = 0.5) -> torch.Tensor:
    z = nn.functional.normalize(z, dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return nn.functional.cross_entropy(sim, positives)


def simclr_forward(self, batch, stage):
    embedding = self.backbone(batch["image"])
    out = {"embedding": embedding}
    if stage == "train":
        out["loss"] = nt_xent(self.projector(embedding), batch["image"].shape[0] // 2)
    return out


def make_networks(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return SmallResNet(), MLP(256, 512, 128)


def make_batches(count: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.rand(SAMPLES * VIEWS, 3, SIZE, SIZE, generator=g),
            "sample_idx": torch.arange(SAMPLES).repeat(VIEWS),
        }
        for _ in range(count)
    ]


def run_loop(batches, warmup):
    backbone, projector = make_networks()
    holder = nn.Module()
    holder.backbone, holder.projector = backbone, projector
    params = list(holder.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=len(batches))
    holder.train()
    losses = []
    start = cpu_start = 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            start, cpu_start = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        loss = simclr_forward(holder, batch, "train")["loss"]
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.detach())
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return elapsed, cpu, [float(x) for x in losses]


class StepTimer(L.Callback):
    def __init__(self, warmup: int, last: int):
        self.warmup, self.last = warmup, last
        self.start = self.end = self.cpu_start = self.cpu_end = 0.0
        self.losses: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(outputs["loss"].detach())
        if batch_idx == self.last:
            self.end, self.cpu_end = time.perf_counter(), time.process_time()


def run_module(batches, warmup, lean: bool):
    backbone, projector = make_networks()
    module = Module(forward=simclr_forward, backbone=backbone, projector=projector)
    timer = StepTimer(warmup, len(batches) - 1)
    with tempfile.TemporaryDirectory() as root:
        options = {"default_root_dir": root, "callbacks": [timer]}
        if lean:
            options.update(
                enable_progress_bar=False,
                logger=False,
                enable_checkpointing=False,
                enable_model_summary=False,
            )
        trainer = L.Trainer(
            accelerator="cpu", devices=1, max_epochs=1, num_sanity_val_steps=0, **options
        )
        trainer.fit(module, DataLoader(batches, batch_size=None, shuffle=False))
    elapsed, cpu = timer.end - timer.start, timer.cpu_end - timer.cpu_start
    return elapsed, cpu, [float(x) for x in timer.losses]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few steps and rounds (smoke run)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warmup = 2
    steps = args.steps or (4 if args.quick else 15)
    rounds = args.rounds or (1 if args.quick else 3)
    batches = make_batches(warmup + steps)
    images = steps * SAMPLES * VIEWS
    variants = {
        "loop": lambda: run_loop(batches, warmup),
        "module_lean": lambda: run_module(batches, warmup, lean=True),
        "module_default": lambda: run_module(batches, warmup, lean=False),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    cpu_rates: dict[str, list[float]] = {name: [] for name in variants}
    loss_gap: dict[str, float] = {}
    reference: list[float] | None = None
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            elapsed, cpu, losses = variants[name]()
            rates[name].append(images / elapsed)
            cpu_rates[name].append(images / cpu)
            if name == "loop":
                reference = losses
            print(
                f"round {r} {name:15s} {images / elapsed:8.1f} img/s wall "
                f"{images / cpu:8.1f} img/CPU-s",
                flush=True,
            )
            if reference is not None and name != "loop":
                gap = max(abs(a - b) for a, b in zip(losses, reference, strict=True))
                loss_gap[name] = max(loss_gap.get(name, 0.0), gap)
    median = {name: statistics.median(v) for name, v in rates.items()}
    cpu_median = {name: statistics.median(v) for name, v in cpu_rates.items()}
    rows = []
    header = ("variant", "img/CPU-s", "ratio", "img/s wall", "ratio", "max |dloss|")
    print("\n{:16s} {:>10s} {:>7s} {:>11s} {:>7s} {:>12s}  (medians over rounds)".format(*header))
    for name in variants:
        ratio_cpu = cpu_median[name] / cpu_median["loop"]
        ratio_wall = median[name] / median["loop"]
        gap = loss_gap.get(name, 0.0)
        rows.append(
            {
                "variant": name,
                "images_per_cpu_s_median": round(cpu_median[name], 2),
                "ratio_vs_loop_cpu_time": round(ratio_cpu, 4),
                "images_per_s_wall_median": round(median[name], 2),
                "ratio_vs_loop_wall": round(ratio_wall, 4),
                "images_per_cpu_s_rounds": [round(x, 2) for x in cpu_rates[name]],
                "images_per_s_wall_rounds": [round(x, 2) for x in rates[name]],
                "max_abs_loss_difference_vs_loop": gap,
            }
        )
        print(
            f"{name:16s} {cpu_median[name]:10.1f} {ratio_cpu:7.3f} {median[name]:11.1f} "
            f"{ratio_wall:7.3f} {gap:12.2e}"
        )
    result = {
        "benchmark": "step_overhead",
        "work": "SimCLR step: SmallResNet + MLP(256,512,128) projector, NT-Xent, AdamW + cosine",
        "batch_images": SAMPLES * VIEWS,
        "image_size": SIZE,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "rounds": rounds,
        "quick": args.quick,
        "torch": torch.__version__,
        "lightning": L.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "goal": "module_lean ratio_vs_loop_cpu_time >= 0.97",
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "results": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
