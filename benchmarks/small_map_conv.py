"""SmallMapConv2d (one matmul on tiny maps) against nn.Conv2d, and what it buys SmallResNet.

Times forward + backward (bf16 autocast on CPU, what the quality benchmark trains with; fp32 as
well) of single convolutions at the shapes SmallResNet meets at 28 px, batch 512, and of whole
SmallResNets (default widths and a 512-wide last stage) with the dense path on and off
(``max_input_pixels=0`` forces ``nn.Conv2d``). Variants are interleaved round by round in one
process; each reports the best of the rounds (the least disturbed by other work on the machine).
The outputs of both paths are compared on every shape.

Usage: ``uv run python benchmarks/small_map_conv.py [--quick]``; writes
``benchmarks/results/small_map_conv.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from _interleaved import best_seconds, fwd_bwd_step

from ssl_core.backbone import SmallMapConv2d, SmallResNet

RESULTS = Path(__file__).parent / "results" / "small_map_conv.json"
BATCH = 512
# (C_in, map side, C_out, stride): the 3x3 convolutions of SmallResNet's last two stages at 28 px
CONV_SHAPES = [(256, 2, 256, 1), (512, 2, 512, 1), (128, 4, 256, 2), (128, 4, 128, 1)]
NETS = {"default (32-64-128-256)": (32, 64, 128, 256), "wide (32-64-128-512)": (32, 64, 128, 512)}


def _set_dense(module: torch.nn.Module, on: bool) -> None:
    for m in module.modules():
        if isinstance(m, SmallMapConv2d):
            m.max_input_pixels = 4 if on else 0


def bench_convs(rounds: int, reps: int, batch: int) -> list[dict]:
    rows = []
    for c_in, side, c_out, stride in CONV_SHAPES:
        for dtype in (torch.bfloat16, torch.float32):
            torch.manual_seed(0)
            conv = SmallMapConv2d(c_in, c_out, 3, stride, 1, bias=False, max_input_pixels=side**2)
            x = torch.randn(batch, c_in, side, side).contiguous(memory_format=torch.channels_last)
            x.requires_grad_(True)
            with torch.no_grad():
                err = (conv(x) - F.conv2d(x, conv.weight, None, stride, 1)).abs().max().item()
            plain = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            plain.weight = conv.weight
            steps = {"conv2d": fwd_bwd_step(plain, x, dtype), "dense": fwd_bwd_step(conv, x, dtype)}
            best = best_seconds(steps, rounds, reps)
            rows.append(
                {
                    "shape": f"{c_in}->{c_out}, {side}x{side}, stride {stride}",
                    "dtype": str(dtype).removeprefix("torch."),
                    "conv2d_ms": 1e3 * best["conv2d"],
                    "dense_ms": 1e3 * best["dense"],
                    "speedup": best["conv2d"] / best["dense"],
                    "max_abs_diff_fp32": err,
                }
            )
    return rows


def bench_nets(rounds: int, reps: int, batch: int) -> list[dict]:
    rows = []
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    for name, widths in NETS.items():
        torch.manual_seed(0)
        net = SmallResNet(in_channels=1, widths=widths).to(memory_format=torch.channels_last)
        step = fwd_bwd_step(net, x)
        modes = {"off": lambda n=net: _set_dense(n, False), "on": lambda n=net: _set_dense(n, True)}
        best = best_seconds({"off": step, "on": step}, rounds, reps, before=modes)
        rows.append(
            {
                "net": name,
                "conv2d_views_per_s": batch / best["off"],
                "dense_views_per_s": batch / best["on"],
                "speedup": best["off"] / best["on"],
            }
        )
    return rows


def main() -> None:
    """Run both tables, print them and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, batch 64 (a smoke test)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    rounds, reps, batch = (1, 1, 64) if args.quick else (args.rounds, 3, BATCH)
    convs = bench_convs(rounds, reps, batch)
    nets = bench_nets(rounds, reps, batch)
    print(f"forward + backward, batch {batch}, {torch.get_num_threads()} threads, best of {rounds}")
    print(f"{'convolution':34s} {'dtype':9s} {'conv2d ms':>10s} {'dense ms':>9s} {'speedup':>8s}")
    for r in convs:
        print(
            f"{r['shape']:34s} {r['dtype']:9s} {r['conv2d_ms']:10.2f} {r['dense_ms']:9.2f} "
            f"{r['speedup']:7.2f}x"
        )
    print(f"{'SmallResNet, 28 px, bf16':34s} {'conv2d views/s':>15s} {'dense views/s':>14s}")
    for r in nets:
        print(
            f"{r['net']:34s} {r['conv2d_views_per_s']:15.0f} {r['dense_views_per_s']:14.0f} "
            f"{r['speedup']:7.2f}x"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "batch": batch,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "torch": torch.__version__,
                "convolutions": convs,
                "small_resnet": nets,
            },
            indent=2,
        )
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
