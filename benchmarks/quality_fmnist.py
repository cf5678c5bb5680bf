"""Feature quality of every method on Fashion-MNIST at the same wall-clock budget.

For each method (simclr, nnclr, byol, vicreg, barlow_twins, supervised) the app trains the same
SmallResNet (``--backbone``, default ``small_resnet_wide_2x2``: widths 32-64-128-512, 2x2 map kept)
with the method's presets on the FULL Fashion-MNIST
(``data=fashion_mnist``: 60k train / 10k test, the Debian package ``dataset-fashion-mnist``),
then ``ssl_train.evaluate`` (what ``ssl-eval`` runs) scores the exported backbone: weighted kNN
(k=20, cosine, T=0.07) and a linear probe on frozen features of the train split, top-1 on the
test split. Raw pixels and a randomly initialised SmallResNet are the baselines.

Equal budget: a calibration run measures each method's wall-clock time per training step (data,
batched augmentation, forward, backward, optimiser step, online probe/kNN updates; after warm-up
steps) and the time to validate; the real run then gets
``max_steps = (minutes * 60 - validation) / seconds_per_step`` and validates once, at its last
step. A step budget instead of Lightning's ``max_time`` keeps the schedules whole: the cosine
learning rate and the EMA coefficient of BYOL reach their final values at the end of the budget
(``max_time`` would stop them half-way). The table reports the measured wall time of each run
(setup, training and the final validation), so unequal budgets would show.

Each method trains in its own run directory under ``--out``; a method whose directory already
holds ``quality.json`` is not redone, one with a ``summary.json`` is only evaluated, and one with
only ``checkpoints/last.ckpt`` (a crash) is resumed. So a crashed benchmark continues with the
same command.

    uv run python benchmarks/quality_fmnist.py                       # ~6 x 10 min + evaluation
    uv run python benchmarks/quality_fmnist.py --methods simclr,byol --minutes 5
    uv run python benchmarks/quality_fmnist.py --smoke --methods simclr,byol   # check the script

Writes ``benchmarks/results/quality_fmnist.md`` and ``.json`` (``--smoke``: into ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from _step_clock import StepClock

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("simclr", "nnclr", "byol", "vicreg", "barlow_twins", "supervised")


def base_overrides(method: str, args: argparse.Namespace) -> list[str]:
    """The app overrides shared by the calibration and the real run of ``method``."""
    overrides = [
        f"method={method}",
        f"data={args.data}",
        f"backbone={args.backbone}",
        f"seed={args.seed}",
        "progress_bar=none",
        "summary=false",
    ]
    if args.smoke:
        overrides += [
            "data.train.limit=2048",
            "data.val.limit=512",
            "data.train.batch_size=64",
            "callbacks.knn.queue_length=2048",
        ]
    return overrides + list(args.set)


def calibrate(method: str, args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    """Measure seconds per training step and per validation pass of ``method`` (short run)."""
    from ssl_train import compose
    from ssl_train.runner import build, prepare

    warmup, steps = args.calibration_warmup, args.calibration_steps
    overrides = [
        *base_overrides(method, args),
        f"trainer.max_steps={warmup + steps}",
        "trainer.max_epochs=-1",
        "trainer.check_val_every_n_epoch=null",
        f"+trainer.val_check_interval={warmup + steps}",
        "export_backbone=false",
        "plots=false",
        "checkpoint.every_n_steps=null",
        "checkpoint.monitor=null",
        "+trainer.enable_model_summary=false",
    ]
    cfg, run_dir, _ = prepare(compose(overrides), run_dir=scratch)
    run_dir.mkdir(parents=True, exist_ok=True)
    datamodule, module, trainer, _ = build(cfg, run_dir)
    clock = StepClock(warmup)
    trainer.callbacks.append(clock)
    trainer.fit(module, datamodule=datamodule)
    if clock.seconds is None:
        raise RuntimeError("calibration: no timed step ran; raise --calibration-steps.")
    return {
        "seconds_per_step": clock.seconds / clock.steps,
        "validation_s": clock.val_seconds,
        "batch_size": float(cfg.data.train.batch_size),
        "train_size": float(len(datamodule.train_dataloader().sampler.indices())),
    }


def train(method: str, args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Calibrate, then train ``method`` for the budget (or resume a crashed run)."""
    from ssl_train import compose, run

    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        print(f"[{method}] resuming {run_dir}")
        result = run(compose([f"resume={run_dir}"]))
        calibration = json.loads((run_dir / "calibration.json").read_text())
        resumed = True
    else:
        scratch = run_dir.parent / f"_calibration_{method}"
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"[{method}] calibrating ({args.calibration_steps} timed steps)")
        calibration = calibrate(method, args, scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        budget = args.minutes * 60.0
        train_size = calibration["train_size"]
        val_s = calibration["validation_s"]
        steps = max(1, int((budget - val_s) / calibration["seconds_per_step"]))
        calibration.update(budget_s=budget, max_steps=steps)
        calibration["epochs"] = steps * calibration["batch_size"] / train_size
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")
        print(
            f"[{method}] {calibration['seconds_per_step'] * 1e3:.0f} ms/step, validation "
            f"{val_s:.1f} s -> {steps} steps ({calibration['epochs']:.2f} epochs)"
        )
        overrides = [
            *base_overrides(method, args),
            f"trainer.max_steps={steps}",
            "trainer.max_epochs=-1",
            "trainer.check_val_every_n_epoch=null",
            f"+trainer.val_check_interval={steps}",
        ]
        result = run(compose(overrides), run_dir=run_dir)
        resumed = False
    assert result is not None
    if "val/probe_top1" not in result.metrics:  # resumed after its last validation
        last = last_logged(run_dir / "metrics.csv", "val/probe_top1")
        if last is not None:
            result.metrics["val/probe_top1"] = last
    return {
        "metrics": result.metrics,
        "wall_s": result.wall_s,
        "app_images_per_s": result.images_per_s,
        "calibration": calibration,
        "resumed": resumed,
    }


def last_logged(csv_path: Path, key: str) -> float | None:
    """The last value of ``key`` in a run's ``metrics.csv``, or ``None``."""
    import csv

    if not csv_path.is_file():
        return None
    with csv_path.open(newline="") as f:
        values = [row[key] for row in csv.DictReader(f) if row.get(key)]
    return float(values[-1]) if values else None


def eval_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Settings of ``ssl_train.evaluate`` shared by every row."""
    from ssl_train.evaluation import ProbeSettings

    kwargs: dict[str, Any] = {"data": args.data, "ks": (10, 20, 200), "progress": False}
    if args.smoke:
        kwargs.update(
            train_limit=2048, test_limit=512, probe=ProbeSettings(epochs=5, min_steps=200)
        )
    return kwargs


def method_row(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train (unless done) and evaluate one method; cached in ``<run dir>/quality.json``."""
    from ssl_train import evaluate

    run_dir = args.out / method
    done = run_dir / "quality.json"
    if done.is_file():
        print(f"[{method}] already done: {done}")
        return json.loads(done.read_text())
    if (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text())
        calibration = json.loads((run_dir / "calibration.json").read_text())
        trained = {
            "metrics": summary["metrics"],
            "wall_s": summary["wall_s"],
            "app_images_per_s": summary["images_per_s"],
            "calibration": calibration,
            "resumed": False,
        }
    else:
        trained = train(method, args, run_dir)
    print(f"[{method}] evaluating")
    evaluation = evaluate(run_dir, **eval_kwargs(args))
    calibration = trained["calibration"]
    row = {
        "method": method,
        "knn20": evaluation["metrics"]["knn20_top1"],
        "linear": evaluation["metrics"]["linear_top1"],
        "online_probe": trained["metrics"].get("val/probe_top1"),
        "wall_s": trained["wall_s"],
        "images_per_s": calibration["batch_size"] / calibration["seconds_per_step"],
        "steps": calibration["max_steps"],
        "epochs": calibration["epochs"],
        "train": trained,
        "evaluation": evaluation,
    }
    done.write_text(json.dumps(row, indent=2, default=str) + "\n")
    return row


def baseline_row(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Raw pixels or a random-init backbone, evaluated like the methods (cached)."""
    from ssl_train import evaluate

    path = args.out / f"_baseline_{kind}.json"
    if path.is_file():
        return json.loads(path.read_text())
    print(f"[{kind}] evaluating")
    extra = {"arch": args.backbone} if kind == "random" else {}
    evaluation = evaluate(backbone=kind, **extra, **eval_kwargs(args))
    row = {
        "method": {"pixels": "raw pixels", "random": f"random-init {args.backbone}"}[kind],
        "knn20": evaluation["metrics"]["knn20_top1"],
        "linear": evaluation["metrics"]["linear_top1"],
        "evaluation": evaluation,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2, default=str) + "\n")
    return row


def git_commit() -> str:
    """The checked-out commit, ``+dirty`` when the tree has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit}+dirty" if dirty else commit or "unknown"


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The results page."""
    lines = [
        "# Fashion-MNIST: feature quality at an equal wall-clock budget",
        "",
        f"Commit `{meta['commit']}`, {meta['date']}; {meta['budget_minutes']:g} min per method "
        f"on {meta['machine']} ({meta['threads']} torch threads, {meta['device']}); data "
        f"`{meta['data']}`{' (smoke run: subsets)' if meta['smoke'] else ''}.",
        "",
        *(
            [f"App overrides for every row: `{' '.join(meta['overrides'])}`.", ""]
            if meta["overrides"]
            else []
        ),
        f"Backbone for every row: `backbone={meta['backbone']}`.",
        "",
        "| method | kNN-20 | linear | online probe | wall time | img/s | steps (epochs) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        wall = f"{r['wall_s'] / 60:.1f} min" if "wall_s" in r else "-"
        ips = f"{r['images_per_s']:.0f}" if "images_per_s" in r else "-"
        steps = f"{r['steps']} ({r['epochs']:.2f})" if "steps" in r else "-"
        name = r["method"] + (" (resumed)" if r.get("train", {}).get("resumed") else "")
        lines.append(
            f"| {name} | {_pct(r['knn20'])} | {_pct(r['linear'])} | "
            f"{_pct(r.get('online_probe'))} | {wall} | {ips} | {steps} |"
        )
    probe = meta["probe"]
    lines += [
        "",
        "Top-1 accuracy (%) on the test split. kNN-20: cosine, `exp(sim / 0.07)` votes over the "
        "train split's features (faiss, exact). Linear: `nn.Linear` on standardised frozen "
        f"features, AdamW lr {probe['lr']:g}, {probe['epochs']} epochs (at least "
        f"{probe['min_steps']} steps), batch {probe['batch_size']}, cosine schedule. Online "
        "probe: the app's `OnlineProbe` (trained alongside the backbone) at the end of the run. "
        "img/s: source images per second of wall time in training steps (data, batched "
        "augmentation, forward, backward, optimiser, online callbacks), measured by the "
        "calibration run; wall time: the whole run (setup, training, final validation).",
        "",
        f"Reproduce: `uv run python benchmarks/quality_fmnist.py --minutes "
        f"{meta['budget_minutes']:g}{' --smoke' if meta['smoke'] else ''}"
        f" --backbone {meta['backbone']}"
        f"{''.join(f' --set {o}' for o in meta['overrides'])}`; per-method run "
        f"directories under `{meta['out']}` (evaluate one again with "
        f"`ssl-eval <run dir> data={meta['data']}`).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Train and evaluate every method, write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated")
    parser.add_argument("--minutes", type=float, default=10.0, help="budget per method")
    parser.add_argument("--smoke", action="store_true", help="embedded subset, ~15 s per method")
    parser.add_argument("--out", type=Path, default=None, help="run directories")
    parser.add_argument("--results", type=Path, default=None, help="md/json path without suffix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration-steps", type=int, default=None)
    parser.add_argument("--calibration-warmup", type=int, default=3)
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument(
        "--backbone",
        default="small_resnet_wide_2x2",
        help="the app's backbone config for every row",
    )
    parser.add_argument(
        "--set", action="append", default=[], help="extra app override for every method"
    )
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}.")
    args.data = "fashion_mnist_embedded" if args.smoke else "fashion_mnist"
    if args.smoke and args.minutes == 10.0:
        args.minutes = 0.25
    if args.calibration_steps is None:
        args.calibration_steps = 4 if args.smoke else 20
    args.out = args.out or ROOT / "outputs" / f"quality_fmnist{'_smoke' if args.smoke else ''}"
    args.out = args.out.resolve()
    results = args.results or (
        args.out / "quality_fmnist_smoke" if args.smoke else RESULTS / "quality_fmnist"
    )
    start = time.perf_counter()
    rows = [] if args.no_baselines else [baseline_row("pixels", args), baseline_row("random", args)]
    rows += [method_row(m, args) for m in methods]
    from ssl_train.evaluation import ProbeSettings

    probe = eval_kwargs(args).get("probe") or ProbeSettings()
    meta = {
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "budget_minutes": args.minutes,
        "data": args.data,
        "smoke": args.smoke,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "out": str(args.out),
        "probe": probe.__dict__,
        "backbone": args.backbone,
        "overrides": list(args.set),
        "total_s": time.perf_counter() - start,
    }
    page = markdown(rows, meta)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.with_suffix(".md").write_text(page)
    results.with_suffix(".json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2, default=str) + "\n"
    )
    print(page)
    print(f"wrote {results.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
