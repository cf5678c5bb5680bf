"""Feature quality of every method on Fashion-MNIST at the same wall-clock budget.

Each row trains one method config of the app on one backbone with the method's presets on the
FULL Fashion-MNIST (``data=fashion_mnist``: 60k train / 10k test, the Debian package
``dataset-fashion-mnist``), then ``ssl_train.evaluate`` (what ``ssl-eval`` runs) scores the
exported backbone: weighted kNN (k=20, cosine, T=0.07) and a linear probe on frozen features of
the train split, top-1 on the test split. Raw pixels and a randomly initialised copy of every
backbone in the table are the baselines. Rows are selected as ``METHOD`` (the default
``--backbone``, ``small_resnet_wide_2x2``: SmallResNet widths 32-64-128-512, 2x2 map kept; or
the ViT a ViT-only method selects) or ``METHOD@BACKBONE`` (``dino@vit_tiny``; the method's
``<METHOD>_vit`` recipe when the app has one); see ``_quality_rows.py``.

Equal budget: a calibration run measures each row's wall-clock time per training step (data,
batched augmentation, forward, backward, optimiser step, online probe/kNN updates; after warm-up
steps) and the time to validate; the real run then gets
``max_steps = (minutes * 60 - validation) / seconds_per_step`` and validates once, at its last
step. A step budget instead of Lightning's ``max_time`` keeps the schedules whole: the cosine
learning rate and the EMA coefficients reach their final values at the end of the budget
(``max_time`` would stop them half-way). The table reports the measured wall time of each run
(setup, training and the final validation), so unequal budgets would show.

Each row trains in its own run directory under ``--out`` (``<METHOD>`` or
``<METHOD>@<BACKBONE>``); a row whose directory already holds ``quality.json`` is not redone,
one with a ``summary.json`` is only evaluated, and one with only ``checkpoints/last.ckpt`` (a
crash) is resumed. So a crashed benchmark continues with the same command.

The measured rows are merged into the results file: rows of the same name are replaced, the
others kept with their own commit and date; baselines missing from it are measured (``--baselines
all`` re-measures them). Rows measured with other settings (budget, ``--set`` overrides, data)
than the rows kept are refused unless ``--mixed``.

    uv run python benchmarks/quality_fmnist.py --methods vicreg dino@vit_tiny mae  # 3 x 10 min
    uv run python benchmarks/quality_fmnist.py --methods all     # every method (hours)
    uv run python benchmarks/quality_fmnist.py --smoke --minutes 0.05 --methods simclr
    uv run python benchmarks/quality_fmnist.py --render-only     # rewrite the .md from the .json

Writes ``benchmarks/results/quality_fmnist.md`` and ``.json`` (``--smoke``: into ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import torch
from _quality_report import markdown
from _quality_rows import (
    Catalog,
    Selector,
    attach_references,
    baseline_name,
    merge,
    mismatches,
    parse_selectors,
    upgrade,
)
from _quality_train import train
from _result_files import git_commit

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SEED_ROWS = ("simclr", "nnclr", "byol", "vicreg", "barlow_twins", "supervised")


def eval_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Settings of ``ssl_train.evaluate`` shared by every row."""
    from ssl_train.evaluation import ProbeSettings

    kwargs: dict[str, Any] = {"data": args.data, "ks": (10, 20, 200), "progress": False}
    if args.smoke:
        limit = args.smoke_limit
        kwargs.update(
            train_limit=limit, test_limit=limit // 4, probe=ProbeSettings(epochs=5, min_steps=50)
        )
    return kwargs


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a row records about how it was measured (the merge compares these)."""
    return {
        "commit": args.commit,
        "date": args.date,
        "budget_minutes": args.minutes,
        "data": args.data,
        "smoke": args.smoke,
        "overrides": list(args.set),
    }


def method_row(sel: Selector, args: argparse.Namespace) -> dict[str, Any]:
    """Train (unless done) and evaluate one row; cached in ``<run dir>/quality.json``."""
    from ssl_train import evaluate

    run_dir = args.out / sel.key
    done = run_dir / "quality.json"
    if done.is_file():
        row = json.loads(done.read_text())
        if row.get("backbone", sel.backbone) != sel.backbone:
            raise SystemExit(
                f"{done} was measured with backbone={row['backbone']}; move {run_dir}."
            )
        print(f"[{sel.name}] already done: {done}")
        return row
    if (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text())
        trained = {
            "metrics": summary["metrics"],
            "wall_s": summary["wall_s"],
            "app_images_per_s": summary["images_per_s"],
            "calibration": json.loads((run_dir / "calibration.json").read_text()),
            "resumed": False,
        }
    else:
        trained = train(sel, args, run_dir)
    print(f"[{sel.name}] evaluating")
    evaluation = evaluate(run_dir, **eval_kwargs(args))
    calibration = trained["calibration"]
    row = {
        "method": sel.name,
        "kind": "method",
        "selector": sel.key,
        "config": sel.config,
        "backbone": sel.backbone,
        "vit": sel.vit,
        **settings(args),
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


def baseline_row(
    kind: str, backbone: str | None, vit: bool, args: argparse.Namespace
) -> dict[str, Any]:
    """Raw pixels or a random-init ``backbone``, evaluated like the trained rows (cached)."""
    from ssl_train import evaluate

    path = args.out / (
        f"_baseline_{kind}.json" if backbone is None else f"_baseline_{kind}_{backbone}.json"
    )
    if path.is_file() and args.baselines == "all":
        path.unlink()  # re-measure
    if path.is_file():
        return json.loads(path.read_text())
    name = baseline_name(kind, backbone)
    print(f"[{name}] evaluating")
    extra = {"arch": backbone} if kind == "random" else {}
    evaluation = evaluate(backbone=kind, **extra, **eval_kwargs(args))
    row = {
        "method": name,
        "kind": kind,
        "backbone": backbone,
        "vit": vit,
        **{k: v for k, v in settings(args).items() if k in ("commit", "date", "data", "smoke")},
        "knn20": evaluation["metrics"]["knn20_top1"],
        "linear": evaluation["metrics"]["linear_top1"],
        "evaluation": evaluation,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2, default=str) + "\n")
    return row


def add_baselines(rows: list[dict[str, Any]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """``rows`` with raw pixels and a random-init row per trained backbone (per ``--baselines``)."""
    if args.baselines == "none":
        return rows
    have = {r["method"] for r in rows} if args.baselines == "missing" else set()
    wanted = [("pixels", None, False)] + [
        ("random", r["backbone"], bool(r.get("vit"))) for r in rows if r.get("kind") == "method"
    ]
    for kind, backbone, vit in dict.fromkeys(wanted):
        if baseline_name(kind, backbone) not in have:
            rows = merge(rows, [baseline_row(kind, backbone, vit, args)], args.backbone)
    return rows


def commit_of_tree() -> str:
    """The checked-out commit (:func:`_result_files.git_commit`), ``+dirty`` when tracked files
    other than this benchmark's own results have uncommitted changes."""
    commit = git_commit()
    try:
        # what the benchmark writes is not what it measures: benchmarks/results is left out
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!benchmarks/results",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return commit
    return f"{commit}+dirty" if dirty and commit != "unknown" else commit


def run_meta(args: argparse.Namespace, old: dict[str, Any], total_s: float) -> dict[str, Any]:
    """The results file's ``meta``: the machine and evaluation of the latest update."""
    from ssl_train.evaluation import ProbeSettings

    probe = eval_kwargs(args).get("probe") or ProbeSettings()
    return {
        **old,
        "commit": args.commit,
        "date": args.date,
        "data": args.data,
        "smoke": args.smoke,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "out": str(args.out),
        "probe": probe.__dict__,
        "backbone": args.backbone,
        "total_s": total_s,
    }


def parse_args(catalog: Catalog) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(SEED_ROWS),
        metavar="ROW",
        help="rows: METHOD or METHOD@BACKBONE (space or comma separated; 'all': every method; "
        f"methods: {', '.join(catalog.selectable())})",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="budget per row")
    parser.add_argument("--smoke", action="store_true", help="embedded subset, tiny budget")
    parser.add_argument("--smoke-limit", type=int, default=1024, help="--smoke: train images")
    parser.add_argument("--out", type=Path, default=None, help="run directories")
    parser.add_argument("--results", type=Path, default=None, help="md/json path without suffix")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration-steps", type=int, default=None)
    parser.add_argument("--calibration-warmup", type=int, default=3)
    parser.add_argument(
        "--baselines",
        choices=("missing", "all", "none"),
        default="missing",
        help="measure the baselines missing from the results (default), all of them, or none",
    )
    parser.add_argument("--mixed", action="store_true", help="merge rows of other settings")
    parser.add_argument("--render-only", action="store_true", help="rewrite the .md only")
    parser.add_argument(
        "--same-machine-reference",
        type=Path,
        action="append",
        default=[],
        metavar="JSON",
        help="results of older code measured on this machine: the no-regression goal of each "
        "same-named row compares with it instead of the row's previous figures",
    )
    parser.add_argument(
        "--backbone",
        default="small_resnet_wide_2x2",
        choices=sorted(catalog.backbones),
        help="the default backbone (rows named by method alone)",
    )
    parser.add_argument(
        "--set", action="append", default=[], help="extra app override for every trained row"
    )
    args = parser.parse_args()
    try:
        args.rows = parse_selectors(args.methods, catalog, args.backbone)
    except ValueError as err:
        parser.error(str(err))
    args.data = "fashion_mnist_embedded" if args.smoke else "fashion_mnist"
    if args.smoke and args.minutes == 10.0:
        args.minutes = 0.25
    if args.calibration_steps is None:
        args.calibration_steps = 4 if args.smoke else 20
    args.out = (
        args.out or ROOT / "outputs" / f"quality_fmnist{'_smoke' if args.smoke else ''}"
    ).resolve()
    args.results = args.results or (
        args.out / "quality_fmnist_smoke" if args.smoke else RESULTS / "quality_fmnist"
    )
    args.commit, args.date = commit_of_tree(), time.strftime("%Y-%m-%d %H:%M")
    return args


def main() -> None:
    """Measure the selected rows, merge them into the results, write the table."""
    catalog = Catalog.from_conf(Path(str(files("ssl_train.conf"))))
    args = parse_args(catalog)
    json_path, md_path = args.results.with_suffix(".json"), args.results.with_suffix(".md")
    old = json.loads(json_path.read_text()) if json_path.is_file() else {}
    existing = upgrade(old)
    if not args.render_only:
        replaced = {s.name for s in args.rows}
        kept = [r for r in existing if r["method"] not in replaced]
        differ = mismatches(kept, settings(args))
        if differ and not args.mixed:
            raise SystemExit(
                f"{json_path} holds rows measured with other settings ({'; '.join(differ)}); "
                "pass the same --minutes/--set, --results OTHER for a separate table, or --mixed."
            )
        start = time.perf_counter()
        new = [method_row(s, args) for s in args.rows]
        rows = merge(existing, new, args.backbone)
        rows = add_baselines(rows, args)
        meta = run_meta(args, old.get("meta", {}), time.perf_counter() - start)
    else:
        rows, meta = merge(existing, [], args.backbone), dict(old.get("meta", {}))
    for path in args.same_machine_reference:
        rows = attach_references(rows, json.loads(path.read_text()))
    for stale in ("budget_minutes", "overrides"):  # per row now
        meta.pop(stale, None)
    page = markdown(rows, meta)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(page)
    json_path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str) + "\n")
    print(page)
    print(f"wrote {md_path} and .json")


if __name__ == "__main__":
    main()
