"""Run every performance benchmark and write ``benchmarks/results/summary.md`` (ratios and goals).

Benchmarks (each a script in this folder that prints a table and writes JSON):

| script | headline | goal |
|---|---|---|
| ``losses.py`` | our time / fastest peer's (lightly, stable-pretraining); / reference | <= 1 |
| ``augment.py`` | batched ``ssl_data`` images/s / torchvision v2 per-sample | >= 10x |
| ``knn.py`` | torch brute force / OnlineKNN exact search; kNN + probe epoch share | 2x; 5% |
| ``step_overhead.py`` | ``ssl_core.Module`` + Trainer images/s / hand-written loop | >= 0.97 |
| ``forward_overhead.py`` | ``simclr_forward`` time / hand-written forward | informational |
| ``small_map_conv.py`` | SmallResNet views/s with ``SmallMapConv2d`` / with ``nn.Conv2d`` | >= 1 |
| ``vit_attention.py`` | small-image ViT images/s, explicit attention / fused (CPU) | >= 0.95 |

``data_pipeline.json``, ``gpu_throughput.json`` and ``quality_fmnist.json`` are summarised too
when they exist (they are run on their own: ``data_pipeline.py`` generates 20k JPEGs,
``gpu_throughput.py`` needs a GPU, ``quality_fmnist.py`` takes an hour).

    uv run python benchmarks/run_all.py                  # full runs (tens of minutes on 2 cores)
    uv run python benchmarks/run_all.py --quick          # small sizes; results under results/quick/
    uv run python benchmarks/run_all.py --from-existing  # only rewrite summary.md from the JSON

``--quick`` leaves the full results alone: its JSON files and summary go to ``results/quick/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _result_files import git_commit, result_mode, shown
from _summaries import (
    Headline,
    summarise_augment,
    summarise_data_pipeline,
    summarise_forward_overhead,
    summarise_gpu_throughput,
    summarise_knn,
    summarise_losses,
    summarise_quality,
    summarise_small_map_conv,
    summarise_step_overhead,
    summarise_vit_attention,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


@dataclass(frozen=True)
class Benchmark:
    """A benchmark script: its name, how it takes its output path, and its JSON file."""

    name: str
    out_flag: str | None  # None: the script writes results/<name>.json itself
    summarise: Callable[[dict[str, Any]], list[Headline]]


BENCHMARKS = [
    Benchmark("losses", "--out", summarise_losses),
    Benchmark("augment", "--out", summarise_augment),
    Benchmark("knn", None, summarise_knn),
    Benchmark("step_overhead", "--output", summarise_step_overhead),
    Benchmark("forward_overhead", None, summarise_forward_overhead),
    Benchmark("small_map_conv", "--output", summarise_small_map_conv),
    Benchmark("vit_attention", "--output", summarise_vit_attention),
]
EXTRAS = [
    Benchmark("data_pipeline", "--out", summarise_data_pipeline),
    Benchmark("gpu_throughput", "--out", summarise_gpu_throughput),
    Benchmark("quality_fmnist", None, summarise_quality),
]


def run_benchmark(bench: Benchmark, quick: bool, results: Path) -> dict[str, Any]:
    """Run one script; with ``--quick`` keep the full results file in place."""
    target = results / f"{bench.name}.json"
    cmd = [sys.executable, str(HERE / f"{bench.name}.py")] + (["--quick"] if quick else [])
    if bench.out_flag is not None:
        cmd += [bench.out_flag, str(target)]
    fixed = RESULTS / f"{bench.name}.json"  # where a script without an output flag writes
    backup = None
    if bench.out_flag is None and target != fixed and fixed.exists():
        backup = fixed.with_suffix(".json.keep")
        shutil.copy2(fixed, backup)
    print(f"$ {' '.join(cmd)}", flush=True)
    start = time.perf_counter()
    try:
        rc = subprocess.run(cmd, cwd=ROOT).returncode
        if bench.out_flag is None and target != fixed and fixed.exists() and rc == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(fixed, target)
    finally:
        if backup is not None:
            shutil.move(backup, fixed)
    return {
        "name": bench.name,
        "returncode": rc,
        "seconds": time.perf_counter() - start,
        "quick": quick,
    }


def collect(results: Path, runs: dict[str, dict[str, Any]]) -> list[Headline]:
    """Headlines of every benchmark whose JSON exists under ``results``."""
    lines: list[Headline] = []
    for bench in BENCHMARKS + EXTRAS:
        path = results / f"{bench.name}.json"
        if bench in EXTRAS and not path.exists():
            continue
        run = runs.get(bench.name)
        if run is not None and run["returncode"] != 0:
            lines.append(
                Headline(bench.name, "the run failed", f"exit {run['returncode']}", "-", "failed")
            )
            continue
        if not path.exists():
            lines.append(Headline(bench.name, "no result file", "-", "-", "missing"))
            continue
        try:
            lines += bench.summarise(json.loads(path.read_text()))
        except (KeyError, TypeError, ValueError) as err:
            lines.append(Headline(bench.name, f"unreadable result: {err!r}", "-", "-", "error"))
    return lines


def markdown(lines: list[Headline], results: Path, runs: dict[str, dict[str, Any]]) -> str:
    """The summary page."""
    met = sum(h.status == "met" for h in lines)
    goals = sum(h.status in ("met", "not met") for h in lines)
    page = [
        "# Benchmark summary",
        "",
        f"Commit `{git_commit()}`, written {time.strftime('%Y-%m-%d %H:%M')} from the JSON files "
        f"in `{shown(results)}`: {met} of {goals} goals met. Ratios are measured "
        "against a baseline timed in the same run (see each script's docstring).",
        "",
        "| benchmark | measured | value | goal | status |",
        "|---|---|---:|---|---|",
    ]
    for h in lines:
        mark = {"met": "met", "not met": "**not met**"}.get(h.status, h.status)
        page.append(f"| {h.benchmark} | {h.what} | {h.value} | {h.goal} | {mark} |")
    page += ["", "| result file | mode, date | run time |", "|---|---|---:|"]
    for bench in BENCHMARKS + EXTRAS:
        if not (results / f"{bench.name}.json").exists() and bench.name not in runs:
            continue
        seconds = runs.get(bench.name, {}).get("seconds")
        took = "-" if seconds is None else f"{seconds:.0f} s"
        ran_quick = runs[bench.name]["quick"] if bench.name in runs else None
        mode = result_mode(results, bench.name, ran_quick)
        page.append(f"| `{bench.name}.json` | {mode} | {took} |")
    page.append("")
    return "\n".join(page)


def main() -> None:
    """Run the benchmarks (unless ``--from-existing``) and write the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, into results/quick/")
    parser.add_argument("--from-existing", action="store_true", help="only write the summary")
    parser.add_argument("--only", default=None, help="comma-separated benchmark names to run")
    parser.add_argument("--results", type=Path, default=None, help="folder of the JSON files")
    args = parser.parse_args()
    results = args.results or (RESULTS / "quick" if args.quick else RESULTS)
    results = results.resolve()
    names = [b.name for b in BENCHMARKS]
    chosen = names if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {', '.join(names)}.")
    runs: dict[str, dict[str, Any]] = {}
    if not args.from_existing:
        results.mkdir(parents=True, exist_ok=True)
        for bench in BENCHMARKS:
            if bench.name in chosen:
                runs[bench.name] = run_benchmark(bench, args.quick, results)
    lines = collect(results, runs)
    page = markdown(lines, results, runs)
    (results / "summary.md").write_text(page)
    print(page)
    print(f"wrote {results / 'summary.md'}")


if __name__ == "__main__":
    main()
