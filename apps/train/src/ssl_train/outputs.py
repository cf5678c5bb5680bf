"""What a finished run leaves behind: the backbone file, plots and the summary table."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn


def backbone_of(module: nn.Module) -> nn.Module | None:
    """Return the module's backbone to export: the EMA teacher of a teacher/student wrapper.

    The teacher is what the online probe and kNN read for teacher/student methods (BYOL), so the
    exported weights are the ones the reported accuracies were measured on.
    """
    backbone = getattr(module, "backbone", None)
    if backbone is None:
        return None
    from ssl_core import TeacherStudentWrapper

    if isinstance(backbone, TeacherStudentWrapper):
        return backbone.teacher
    return backbone


def _constructor_call(node: Any) -> str | None:
    """Render ``{_target_: a.b.C, x: 1}`` as ``a.b.C(x=1)`` when it is a simple node."""
    if not isinstance(node, Mapping) or "_target_" not in node:
        return None
    args = []
    for key, value in node.items():
        if key.startswith("_"):
            if key != "_target_":
                return None
            continue
        if isinstance(value, Mapping):
            if "_target_" in value and value["_target_"] == "ssl_core.TeacherStudentWrapper":
                return _constructor_call(value)
            return None
        args.append(f"{key}={value!r}")
    if node["_target_"] == "ssl_core.TeacherStudentWrapper":
        return _constructor_call(node.get("student"))
    return f"{node['_target_']}({', '.join(args)})"


def export_backbone(module: nn.Module, backbone_cfg: Any, run_dir: Path) -> tuple[Path, str] | None:
    """Save the backbone's ``state_dict`` with ``torch.save`` and write how to load it.

    Args:
        module: The trained module.
        backbone_cfg: The backbone's config node (plain container), to write the loading line.
        run_dir: The run directory.

    Returns:
        ``(path, loading one-liner)``, or ``None`` when the module has no ``backbone``.
    """
    net = backbone_of(module)
    if net is None:
        return None
    path = run_dir / "backbone.pt"
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    torch.save(state, path)
    call = _constructor_call(backbone_cfg)
    load = f"torch.load({str(path)!r}, weights_only=True)"  # plain tensors: never run code
    if call is not None:
        package = call.split(".", 1)[0]
        line = f"import torch, {package}; net = {call}; net.load_state_dict({load})"
    else:
        line = f"import torch; state_dict = {load}  # then net.load_state_dict"
    (run_dir / "load_backbone.py").write_text(line + "\n")
    return path, line


def write_plots(history: Sequence[Mapping[str, float]], out_dir: Path) -> list[Path]:
    """Plot loss and accuracy metrics per epoch (matplotlib, Agg) into ``out_dir``.

    Args:
        history: One dict of scalar metrics per epoch (with an ``epoch`` key).
        out_dir: Where to write ``loss.png`` and ``accuracy.png``.

    Returns:
        The written files.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    keys = sorted({k for row in history for k in row if k != "epoch"})
    groups = {
        "loss.png": ("loss", [k for k in keys if "loss" in k and not k.endswith("_step")]),
        "accuracy.png": (
            "accuracy",
            [k for k in keys if any(t in k for t in ("top1", "acc", "top5"))],
        ),
    }
    written = []
    for filename, (ylabel, series) in groups.items():
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for key in series:
            points = [(r["epoch"], r[key]) for r in history if key in r and math.isfinite(r[key])]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot([x + 1 for x in xs], ys, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / filename, dpi=100)
        plt.close(fig)
        written.append(out_dir / filename)
    return written


def merge_csv_versions(csv_dir: Path, out: Path) -> Path | None:
    """Merge ``csv_dir/version_*/metrics.csv`` (one per start of a resumed run) into ``out``.

    Rows of a later version replace those of earlier versions from its first step on (steps a
    killed run logged after its last checkpoint were trained again after the resume). Lightning's
    ``CSVLogger`` writes each process start to its own version and has no such merge.

    Returns:
        ``out``, or ``None`` when there is nothing to merge.
    """
    import csv

    versions = sorted(
        (p for p in csv_dir.glob("version_*/metrics.csv")),
        key=lambda p: int(p.parent.name.split("_")[-1]),
    )
    if not versions:
        return None
    rows: list[dict[str, str]] = []
    columns: list[str] = []
    for path in versions:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            new = list(reader)
            for name in reader.fieldnames or []:
                if name not in columns:
                    columns.append(name)
        steps = [int(r["step"]) for r in new if r.get("step")]
        if steps:
            first = min(steps)
            rows = [r for r in rows if not r.get("step") or int(r["step"]) < first]
        rows += new
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return out


def final_metrics(callback_metrics: Mapping[str, Any]) -> dict[str, float]:
    """Convert the trainer's last metrics to plain floats."""
    out = {}
    for key, value in callback_metrics.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = float(value)
        elif isinstance(value, int | float):
            out[key] = float(value)
    return out


def summary_rows(
    metrics: Mapping[str, float], images_per_s: float, wall_s: float, paths: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """The rows of the summary table: final losses and accuracies, speed, output locations."""
    rows: list[tuple[str, str]] = []
    for key in sorted(metrics):
        if key.endswith("_step") or key.startswith("perf/") or f"{key}_epoch" in metrics:
            continue
        if "loss" in key or any(t in key for t in ("top1", "top5", "acc", "rankme")):
            rows.append((key, f"{metrics[key]:.4f}"))
    rows.append(
        ("images/s (train)", f"{images_per_s:,.0f}" if math.isfinite(images_per_s) else "-")
    )
    rows.append(("wall time", f"{wall_s:.1f} s"))
    for name, path in paths.items():
        if path is not None:
            rows.append((name, str(path)))
    return rows


def print_summary(rows: Sequence[tuple[str, str]], title: str) -> None:
    """Print the summary table with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)


def write_summary(path: Path, payload: Mapping[str, Any]) -> None:
    """Write the summary as JSON."""
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
