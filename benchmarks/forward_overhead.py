"""Cost of ssl_forwards.simclr_forward over a hand-written two-view SimCLR forward.

Both variants do the same work per step on CPU: an MLP backbone and projector on a flat two-view
batch (view-major), ``ssl_losses.NTXEntLoss``, then backward. The hand-written forward relies on
the view-major layout (``z[:n], z[n:]``); ``simclr_forward`` folds by ``sample_idx`` (one stable
sort + ``index_select``) and checks attributes, stage and view count. The losses are compared as
a check that the work is the same. Timings are interleaved round by round, median over rounds.

Usage: ``uv run python benchmarks/forward_overhead.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

import ssl_core
import ssl_losses
from ssl_core.backbone import MLP
from ssl_forwards import simclr_forward

RESULTS = Path(__file__).parent / "results" / "forward_overhead.json"


def hand_written(self, batch, stage):
    """SimCLR forward that assumes view-major rows instead of folding by sample_idx."""
    embedding = self.backbone(batch["image"])
    out = {"embedding": embedding}
    if stage == "train":
        z = self.projector(embedding)
        n = z.shape[0] // 2
        out["loss"] = self.simclr_loss(z[:n], z[n:])
    return out


def build(forward) -> ssl_core.Module:
    """The same networks (seeded) for both variants."""
    torch.manual_seed(0)
    return ssl_core.Module(
        forward=forward,
        backbone=MLP(256, [512], 256),
        projector=MLP(256, [256], 64),
        simclr_loss=ssl_losses.NTXEntLoss(temperature=0.5),
    )


def time_steps(module: ssl_core.Module, batch: dict, steps: int) -> float:
    """Seconds per forward + backward step."""
    start = time.perf_counter()
    for _ in range(steps):
        module.zero_grad(set_to_none=True)
        module(batch, "train")["loss"].backward()
    return (time.perf_counter() - start) / steps


def main() -> None:
    """Run the benchmark, print a table and write JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, steps = (3, 5) if args.quick else (7, 20)
    torch.set_num_threads(1)
    samples = 256
    x = torch.randn(samples, 256)
    batch = {
        "image": torch.cat([x + 0.1 * torch.randn_like(x) for _ in range(2)]),
        "sample_idx": torch.arange(samples).repeat(2),
    }
    modules = {"hand_written": build(hand_written), "simclr_forward": build(simclr_forward)}
    losses = {name: m(batch, "train")["loss"].item() for name, m in modules.items()}
    assert abs(losses["hand_written"] - losses["simclr_forward"]) < 1e-5, losses
    times: dict[str, list[float]] = {name: [] for name in modules}
    for module in modules.values():  # warm-up
        time_steps(module, batch, 2)
    for _ in range(rounds):
        for name, module in modules.items():
            times[name].append(time_steps(module, batch, steps))
    median = {name: statistics.median(t) for name, t in times.items()}
    ratio = median["simclr_forward"] / median["hand_written"]
    print(f"{'variant':<16}{'ms/step':>10}{'ratio':>8}")
    for name in modules:
        print(f"{name:<16}{1e3 * median[name]:>10.2f}{median[name] / median['hand_written']:>8.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "forward_overhead",
                "work": "MLP backbone+projector, 2x256 rows, NTXEntLoss, forward+backward, CPU",
                "rounds": rounds,
                "steps_per_round": steps,
                "ms_per_step": {k: 1e3 * v for k, v in median.items()},
                "ratio_simclr_forward_over_hand_written": ratio,
                "torch": torch.__version__,
                "machine": platform.machine(),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
