"""ViT attention kernels on CPU: timm's explicit softmax(q k^T) v against torch's fused kernel.

Times forward + backward (bf16 autocast, what the quality benchmark trains with) of the app's
small-image ViTs (``vit_pico``: 4 blocks of width 96; ``vit_tiny``: 12 blocks of width 192; both
4 px patches) on 28 px images (7 x 7 patches + CLS) and 12 px local crops (3 x 3 + CLS), with
``ViTBackbone(attention="fused")`` and ``attention="math"``. ``attention="auto"``, the default,
picks the explicit kernel on CPUs because of this table. Variants are interleaved round by round
in one process; each reports the best of the rounds. The two kernels' outputs are compared.

Usage: ``uv run python benchmarks/vit_attention.py [--quick]``; writes
``benchmarks/results/vit_attention.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from _interleaved import best_seconds, fwd_bwd_step

from ssl_core.backbone import from_timm

RESULTS = Path(__file__).parent / "results" / "vit_attention.json"
NETS = {"vit_pico": {"depth": 4, "embed_dim": 96, "num_heads": 3}, "vit_tiny": {}}
INPUTS = {"28 px, batch 256": (256, 28), "12 px local crops, batch 768": (768, 12)}


def bench(rounds: int, reps: int, scale: int) -> list[dict[str, object]]:
    """One row per (net, input): images/s of both kernels and their ratio."""
    rows = []
    for name, kwargs in NETS.items():
        nets = {}
        for kernel in ("fused", "math"):
            torch.manual_seed(0)
            nets[kernel] = from_timm(
                "vit_tiny_patch16_224",
                img_size=28,
                patch_size=4,
                in_channels=1,
                attention=kernel,
                **kwargs,
            )
        for label, (batch, side) in INPUTS.items():
            batch = max(8, batch // scale)
            x = torch.randn(batch, 1, side, side)
            with torch.no_grad():
                diff = (nets["fused"](x) - nets["math"](x)).abs().max().item()
            steps = {kernel: fwd_bwd_step(net, x) for kernel, net in nets.items()}
            best = best_seconds(steps, rounds, reps)
            rows.append(
                {
                    "net": name,
                    "input": label,
                    "fused_images_per_s": batch / best["fused"],
                    "math_images_per_s": batch / best["math"],
                    "speedup": best["fused"] / best["math"],
                    "max_abs_difference_fp32": diff,
                }
            )
    return rows


def main() -> None:
    """Run the table, print it and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 1/8 batches (smoke test)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    rounds, reps, scale = (1, 1, 8) if args.quick else (args.rounds, 2, 1)
    rows = bench(rounds, reps, scale)
    print(f"forward + backward, bf16, {torch.get_num_threads()} threads, best of {rounds}")
    print(f"{'ViT':9s} {'input':30s} {'fused img/s':>12s} {'explicit img/s':>15s} {'ratio':>7s}")
    for r in rows:
        print(
            f"{r['net']:9s} {r['input']:30s} {r['fused_images_per_s']:12.0f} "
            f"{r['math_images_per_s']:15.0f} {r['speedup']:6.2f}x"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "quick": args.quick,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
                "torch": torch.__version__,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
