"""GPU training throughput: ours against a hand-written loop (the limit) and the peers.

One prepared script for one GPU, finishing inside ``--budget-s`` (default 450 s, so under 8 min
with start-up). Per setting (SimCLR ResNet-18 32 px batch 512; SimCLR ResNet-50 224 px batch
256; Barlow Twins ViT-S/16 224 px batch 256, needs timm) and per variant (fp32, bf16,
bf16 + channels-last + ``torch.compile``) it times:

- ``hand``: a hand-written PyTorch loop of the same model, loss and on-device augmentation;
- ``ours``: ``ssl_core.Module`` (what ssl-train builds) + Lightning's ``Trainer``;
- ``stable-pretraining`` 0.1.8 and ``lightly`` 1.6.0 on the same recipe (``_gpu_peers``).

Also per setting: our bf16 step once more under ``torch.cuda.set_sync_debug_mode("error")``
(any host synchronisation after the warm-up fails the run), and augmentation's share of the
step time (ours and stable-pretraining's, timed alone on the same batch).

Images/s counts source images (each gives two views) over the timed steps, from the end of
the warm-up to the end of the last step (one GPU synchronisation at each end). Runs go in
order of importance (bf16 first, then fp32, then compile) and a run that would pass the
budget is skipped and reported as such.

    uv run python benchmarks/gpu_throughput.py OUT_DIR             # on the GPU machine
    uv run python benchmarks/gpu_throughput.py OUT_DIR --tiny      # CPU check, under 60 s

Writes ``OUT_DIR/gpu_throughput.json`` (every row) and prints the table last. The GPU run
command line (wheels carried to the machine) is in ``benchmarks/results/gpu_notes.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import torch
from _gpu_peers import peer_missing, run_lightly, run_spt, spt_augmentation_seconds
from _gpu_recipes import (
    SETTINGS,
    TINY_SETTINGS,
    VARIANTS,
    Setting,
    Variant,
    dino_available,
    missing_needs,
)
from _gpu_runners import augmentation_seconds, run_hand, run_ours

RUNNERS = ("hand", "ours", "stable-pretraining", "lightly")
PASSES = ("bf16", "fp32", "bf16 + channels_last + compile")  # most important first


def _run_one(runner: str, setting: Setting, variant: Variant, args: argparse.Namespace) -> dict:
    common = (setting, variant, args.warmup, args.steps, args.tiny)
    if runner == "hand":
        return run_hand(*common)
    if runner == "ours":
        return run_ours(*common)
    if (why := peer_missing(runner)) is not None:
        raise ModuleNotFoundError(why)
    if runner == "stable-pretraining":
        return run_spt(*common)
    return run_lightly(*common, workers=args.workers)


class Schedule:
    """Skip a run when its estimated duration would pass the deadline."""

    def __init__(self, budget_s: float, tiny: bool) -> None:
        self.deadline = time.perf_counter() + budget_s
        self.default = 2.0 if tiny else 25.0
        self.seen: dict[tuple[str, str], float] = {}

    def estimate(self, setting: Setting, runner: str, variant: Variant) -> float:
        base = self.seen.get((setting.name, runner), max(self.seen.values(), default=self.default))
        return base * (3.0 if variant.compile else 1.0)

    def fits(self, seconds: float) -> bool:
        return time.perf_counter() + seconds < self.deadline

    def record(self, setting: Setting, runner: str, variant: Variant, wall: float) -> None:
        if not variant.compile:
            self.seen[(setting.name, runner)] = wall


def measure_all(args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """Every (setting, variant, runner) row, and per setting the sync check and augmentation."""
    settings = TINY_SETTINGS if args.tiny else SETTINGS
    settings = [s for s in settings if not args.settings or any(k in s.name for k in args.settings)]
    runners = [r for r in RUNNERS if r in args.runners]
    schedule = Schedule(args.budget_s, args.tiny)
    rows: list[dict] = []
    extras: list[dict] = []
    for pass_name in PASSES:
        variant = next(v for v in VARIANTS if v.name == pass_name)
        for setting in settings:
            missing = missing_needs(setting)
            for runner in runners:
                row = {
                    "setting": setting.name,
                    "variant": variant.name,
                    "runner": runner,
                    "batch_size": setting.batch_size,
                    "image_size": setting.image_size,
                }
                estimate = schedule.estimate(setting, runner, variant)
                if missing:
                    row["skipped"] = f"needs {', '.join(missing)} (not installed)"
                elif not schedule.fits(estimate):
                    row["skipped"] = f"time budget (about {estimate:.0f} s needed)"
                else:
                    start = time.perf_counter()
                    try:
                        row.update(_run_one(runner, setting, variant, args))
                    except Exception as err:  # a peer (or compile) failing is a result too
                        row["skipped"] = f"{type(err).__name__}: {str(err)[:300]}"
                        row["traceback"] = traceback.format_exc()[-2000:]
                    row["wall_s"] = time.perf_counter() - start
                    schedule.record(setting, runner, variant, row["wall_s"])
                rows.append(row)
                _print_progress(row)
            if pass_name == "bf16" and not missing:
                extras.append(_extras(setting, variant, args, schedule))
    why = (
        "ssl_forwards.dino_forward exists; the setting is not written yet"
        if dino_available()
        else "ssl_forwards.dino_forward does not exist yet"
    )
    extras.append(
        {
            "setting": "dino vit-s/16 2x224+6x96 b128",
            "skipped": f"{why} (hook: dino_available in benchmarks/_gpu_recipes.py)",
        }
    )
    return rows, extras


def _extras(setting: Setting, variant: Variant, args: argparse.Namespace, sched: Schedule) -> dict:
    """The sync-debug run of ours and the augmentation share, for one setting."""
    out: dict[str, Any] = {"setting": setting.name}
    repeats = 2 if args.tiny else 10
    for name, fn in (
        ("ours", augmentation_seconds),
        ("stable-pretraining", spt_augmentation_seconds),
    ):
        if name == "stable-pretraining" and peer_missing(name) is not None:
            continue
        try:
            out[f"augment_ms_{name}"] = 1e3 * fn(setting, repeats)
        except Exception as err:
            out[f"augment_error_{name}"] = f"{type(err).__name__}: {str(err)[:300]}"
    if not torch.cuda.is_available():
        out["sync_debug"] = "skipped: no CUDA device (set_sync_debug_mode needs one)"
    elif not sched.fits(sched.estimate(setting, "ours", variant)):
        out["sync_debug"] = "skipped: time budget"
    else:
        try:
            run_ours(setting, variant, args.warmup, min(args.steps, 5), args.tiny, sync_debug=True)
            out["sync_debug"] = "passed: no host synchronisation after the warm-up"
        except Exception as err:
            out["sync_debug"] = f"FAILED: {type(err).__name__}: {str(err)[:300]}"
            out["sync_debug_traceback"] = traceback.format_exc()[-3000:]
    return out


def _print_progress(row: dict) -> None:
    got = f"{row['images_per_s']:.1f} images/s" if "images_per_s" in row else row["skipped"]
    print(f"[{row['setting']} | {row['variant']} | {row['runner']}] {got}", flush=True)


def table(rows: list[dict], extras: list[dict]) -> str:
    """The summary: images/s per runner, ours / hand, ours / best peer; then the extras."""
    cells = {(r["setting"], r["variant"], r["runner"]): r.get("images_per_s") for r in rows}
    keys = sorted(
        {(r["setting"], r["variant"]) for r in rows},
        key=lambda k: (
            [r["setting"] for r in rows].index(k[0]),
            [v.name for v in VARIANTS].index(k[1]),
        ),
    )
    head = (
        f"{'setting':<30} {'variant':<31}"
        + "".join(f"{r:>12}" for r in ("hand", "ours", "spt", "lightly"))
        + f"{'ours/hand':>11}{'ours/peer':>11}"
    )
    lines = ["images/s (source images; 2 views each)", head]
    for setting, variant in keys:
        vals = [cells.get((setting, variant, r)) for r in RUNNERS]
        hand, ours, spt, lightly = vals
        peers = [v for v in (spt, lightly) if v]
        ratio_hand = f"{ours / hand:.3f}" if ours and hand else "-"
        ratio_peer = f"{ours / max(peers):.2f}x" if ours and peers else "-"
        lines.append(
            f"{setting:<30} {variant:<31}"
            + "".join(f"{v:>12.1f}" if v else f"{'-':>12}" for v in vals)
            + f"{ratio_hand:>11}{ratio_peer:>11}"
        )
    ours_bf16 = {r["setting"]: r for r in rows if r["runner"] == "ours" and r["variant"] == "bf16"}
    spt_bf16 = {
        r["setting"]: r
        for r in rows
        if r["runner"] == "stable-pretraining" and r["variant"] == "bf16"
    }
    lines.append("")
    for extra in extras:
        parts = [extra["setting"]]
        for name, step_rows in (("ours", ours_bf16), ("stable-pretraining", spt_bf16)):
            aug, step = extra.get(f"augment_ms_{name}"), step_rows.get(extra["setting"], {})
            if aug is not None and step.get("ms_per_step"):
                parts.append(
                    f"augmentation {name}: {aug:.1f} ms = {aug / step['ms_per_step']:.0%}"
                    " of its bf16 step"
                )
        parts.append(f"sync check: {extra.get('sync_debug', extra.get('skipped', '-'))}")
        lines.append(" | ".join(parts))
    skipped = [r for r in rows if "skipped" in r]
    if skipped:
        lines.append("")
        lines += [
            f"skipped: {r['setting']} | {r['variant']} | {r['runner']}: {r['skipped']}"
            for r in skipped
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run, write the JSON, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder for gpu_throughput.json")
    parser.add_argument("--tiny", action="store_true", help="CPU check at tiny sizes (< 60 s)")
    parser.add_argument("--budget-s", type=float, default=None, help="default 450 (tiny: 45)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps (default 5)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 15)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(12, os.cpu_count() or 1),
        help="lightly's DataLoader workers",
    )
    parser.add_argument("--runners", nargs="+", default=list(RUNNERS), choices=RUNNERS)
    parser.add_argument("--settings", nargs="+", default=None, help="substrings of setting names")
    args = parser.parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 45.0 if args.tiny else 450.0
    if args.warmup is None:
        args.warmup = 1 if args.tiny else 5
    if args.steps is None:
        args.steps = 2 if args.tiny else 15
    if args.tiny:
        args.workers = min(args.workers, 2)
        torch.set_num_threads(min(torch.get_num_threads(), 2))
    elif not torch.cuda.is_available():
        print("No CUDA device: this measures the CPU (use --tiny for a quick check).")
    start = time.perf_counter()
    rows, extras = measure_all(args)
    payload = {
        "benchmark": "gpu_throughput",
        "tiny": args.tiny,
        "warmup_steps": args.warmup,
        "timed_steps": args.steps,
        "budget_s": args.budget_s,
        "wall_s": time.perf_counter() - start,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "versions": _versions(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": rows,
        "extras": extras,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / "gpu_throughput.json"
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nwrote {out} ({payload['wall_s']:.0f} s)\n")
    print(table(rows, extras))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("lightning", "torchvision", "timm", "kornia", "stable-pretraining", "lightly"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


if __name__ == "__main__":
    main()
