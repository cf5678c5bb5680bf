"""Training one row of the Fashion-MNIST quality table at its budget (calibrate, then run)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from _quality_rows import Selector
from _step_clock import StepClock


def base_overrides(sel: Selector, args: argparse.Namespace) -> list[str]:
    """The app overrides shared by the calibration and the real run of one row."""
    overrides = [
        f"method={sel.config}",
        f"data={args.data}",
        f"backbone={sel.backbone}",
        f"seed={args.seed}",
        "progress_bar=none",
        "summary=false",
    ]
    if args.smoke:
        limit = args.smoke_limit
        overrides += [
            f"data.train.limit={limit}",
            f"data.val.limit={limit // 4}",
            "data.train.batch_size=64",
            f"callbacks.knn.queue_length={limit}",
        ]
    return overrides + list(args.set)


def calibrate(sel: Selector, args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    """Measure seconds per training step and per validation pass of one row (short run)."""
    from ssl_train import compose
    from ssl_train.runner import build, prepare

    warmup, steps = args.calibration_warmup, args.calibration_steps
    overrides = [
        *base_overrides(sel, args),
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
        "steps_per_epoch": float(len(datamodule.train_dataloader())),
    }


def train(sel: Selector, args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Calibrate, then train one row for the budget (or resume a crashed run)."""
    from ssl_train import compose, run

    if (run_dir / "checkpoints" / "last.ckpt").is_file():
        print(f"[{sel.name}] resuming {run_dir}")
        result = run(compose([f"resume={run_dir}"]))
        calibration = json.loads((run_dir / "calibration.json").read_text())
        resumed = True
    else:
        scratch = run_dir.parent / f"_calibration_{sel.key}"
        shutil.rmtree(scratch, ignore_errors=True)
        print(f"[{sel.name}] calibrating ({args.calibration_steps} timed steps)")
        calibration = calibrate(sel, args, scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        budget = args.minutes * 60.0
        val_s = calibration["validation_s"]
        steps = max(1, int((budget - val_s) / calibration["seconds_per_step"]))
        calibration.update(budget_s=budget, max_steps=steps)
        calibration["epochs"] = steps / calibration["steps_per_epoch"]
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")
        print(
            f"[{sel.name}] {calibration['seconds_per_step'] * 1e3:.0f} ms/step, validation "
            f"{val_s:.1f} s -> {steps} steps ({calibration['epochs']:.2f} epochs)"
        )
        overrides = [
            *base_overrides(sel, args),
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
