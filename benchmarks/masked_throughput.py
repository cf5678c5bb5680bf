"""Training-step throughput of MAE, I-JEPA and iBOT against SimCLR on the same ViT.

Each method is built from its app config (``method=<name>``, ``backbone=vit_tiny`` at 28 px with
4 px patches, so the ViT, decoder, predictor and heads are the ones ``ssl-train`` trains). One
training batch is drawn from the embedded Fashion-MNIST subset and augmented once by the
method's own view recipe (two views for SimCLR and iBOT, one for MAE and I-JEPA); the timed
step is forward, backward, an AdamW step and, for the EMA methods, the teacher update.
Methods are interleaved round by round in one process and each reports the best round (the
least disturbed by other work on the machine). ``images/s`` counts source images, so a
two-view step on N images counts N.

Usage: ``uv run python benchmarks/masked_throughput.py [--batch-size 128] [--steps 3]
[--rounds 3] [--device cpu|cuda] [--tiny]``; writes ``benchmarks/results/masked_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import hydra
import torch

from ssl_core import TeacherStudentWrapper
from ssl_train import compose
from ssl_train.runner import prepare

RESULTS = Path(__file__).parent / "results" / "masked_throughput.json"
METHODS = ("simclr", "mae", "ijepa", "ibot")
TINY = ["+backbone.depth=2", "+backbone.embed_dim=64", "+backbone.num_heads=2"]


def build_step(method: str, batch_size: int, device: str, tiny: bool) -> Callable[[], float]:
    """The module of ``method`` on ``device`` and a closure running one training step."""
    overrides = [f"method={method}", "backbone=vit_tiny", "progress_bar=none"]
    overrides += TINY if tiny else []
    if tiny and method == "ibot":
        overrides += ["module.hparams.out_dim=256", "module.projector.student.hidden=128"]
    cfg, _, _ = prepare(compose(overrides), run_dir=Path("/tmp/masked_throughput"))
    torch.manual_seed(0)
    module = hydra.utils.instantiate(cfg.module).to(device)
    images = hydra.utils.instantiate(cfg.data.train.dataset)
    raw = images.__getitems__(range(batch_size))
    raw = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in raw.items()}
    batch = module._batch_transforms["train"](raw)  # the method's own view recipe, once
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    wrappers = [m for m in module.modules() if isinstance(m, TeacherStudentWrapper)]

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        out = module(batch, "train")
        out["loss"].backward()
        optimizer.step()
        for wrapper in wrappers:
            wrapper.update_teacher(0.5)
        if device == "cuda":
            torch.cuda.synchronize()
        return float(out["loss"].detach())

    return step


def main() -> None:
    """Time every method and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="a 2-block 64-wide ViT (smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    steps = {m: build_step(m, args.batch_size, args.device, args.tiny) for m in METHODS}
    for step in steps.values():
        step()  # warm-up: allocator, kernels, lazy buffers
    best = {m: float("inf") for m in METHODS}
    for _ in range(args.rounds):
        for method, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            best[method] = min(best[method], (time.perf_counter() - start) / args.steps)
    rows = []
    for method in METHODS:
        ips = args.batch_size / best[method]
        rows.append(
            {
                "method": method,
                "step_s": best[method],
                "images_per_s": ips,
                "vs_simclr": ips / (args.batch_size / best["simclr"]),
            }
        )
    print(f"| method | step (s) | images/s | vs SimCLR |  ({args.device}, batch {args.batch_size})")
    print("|---|---|---|---|")
    for r in rows:
        step_s, ips, ratio = r["step_s"], r["images_per_s"], r["vs_simclr"]
        print(f"| {r['method']} | {step_s:.3f} | {ips:.1f} | {ratio:.2f}x |")
    meta = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device == "cuda"
        else platform.processor(),
        "batch_size": args.batch_size,
        "steps": args.steps,
        "rounds": args.rounds,
        "tiny": args.tiny,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
