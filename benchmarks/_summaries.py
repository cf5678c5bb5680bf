"""The summary line of each benchmark JSON: what it measured, the figure, its goal (run_all.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Headline:
    """One line of the summary: a measured ratio against its goal."""

    benchmark: str
    what: str
    value: str
    goal: str
    status: str  # "met", "not met" or "info"


def _status(ok: bool) -> str:
    return "met" if ok else "not met"


def summarise_losses(data: dict[str, Any]) -> list[Headline]:
    """Per loss and size: our time over the fastest peer's (goal <= 1) and over the reference."""
    out = []
    for row in data["rows"]:
        what = f"{row['loss']} B={row['B']} d={row['d']}: ours / fastest peer (ours / reference)"
        fastest = row.get("ratio_ours_over_fastest")
        ref = row.get("ratio_ours_over_reference")
        if fastest is None:
            value, status = f"- ({ref:.3f})", "info"
        else:
            value, status = f"{fastest:.3f} ({ref:.3f})", _status(fastest <= 1.0)
        out.append(Headline("losses", what, value, "<= 1.0", status))
    return out


def summarise_augment(data: dict[str, Any]) -> list[Headline]:
    """Per image size: the default batched path's images/s over torchvision per-sample.

    Only rows with the most workers count (all cores busy on both sides). The default path is
    what ``ssl_data.DataModule`` runs in the main process: the fused kernel compiled at install
    time, or the eager ops where the install had none; the eager ops (what also runs on a GPU)
    are shown for information.
    """
    out = []
    workers = max(r["workers"] for r in data["rows"])
    for size in sorted({r["size"] for r in data["rows"]}):
        rows = [
            r
            for r in data["rows"]
            if r["size"] == size and "speedup" in r and r["workers"] == workers
        ]
        for r in rows:
            if "main" not in r["method"]:
                continue
            what = f"{size} px: {r['method']} / torchvision per-sample ({r['workers']} workers)"
            value = f"{r['speedup']:.1f}x"
            if r.get("default"):
                ok = _status(r["speedup"] >= 10)
                out.append(Headline("augment", what, value, ">= 10x", ok))
            else:
                out.append(Headline("augment", what, value, "informational", "info"))
    return out


def summarise_knn(data: dict[str, Any]) -> list[Headline]:
    """Torch brute force time over OnlineKNN's exact path; the epoch share of kNN + probe."""
    bank = "x".join(str(v) for v in data["bank"])
    path = data.get("ours_auto_backend", "faiss")
    out = [
        Headline(
            "knn",
            f"bank {bank}, {data['queries']} queries, k={data['k']}: torch brute force / "
            f"OnlineKNN exact ({path}, CPU time)",
            f"{data['speedup']:.2f}x",
            ">= 2x",
            _status(data["speedup"] >= 2),
        )
    ]
    if "speedup_faiss_rebuild" in data:
        out.append(
            Headline(
                "knn",
                "same, faiss index rebuilt per epoch (the previous path)",
                f"{data['speedup_faiss_rebuild']:.2f}x",
                "informational",
                "info",
            )
        )
    if "ivf_speedup" in data:
        out.append(
            Headline(
                "knn",
                f"same, faiss {data.get('ivf_index', 'IVF')} (approximate, agreement "
                f"{data.get('ivf_prediction_agreement', float('nan')):.4f})",
                f"{data['ivf_speedup']:.2f}x",
                "informational",
                "info",
            )
        )
    if "share" in data:
        out.append(
            Headline(
                "knn",
                f"default ssl-train epoch ({data['share_epoch_s']:.0f} s): OnlineKNN + "
                "OnlineProbe share of the wall time",
                f"{100 * data['share']:.1f}%",
                "<= 5%",
                _status(data["share"] <= 0.05),
            )
        )
    return out


def summarise_step_overhead(data: dict[str, Any]) -> list[Headline]:
    """Module + Trainer throughput over the hand-written loop's (CPU time and wall)."""
    out = []
    for row in data["results"]:
        if row["variant"] == "loop":
            continue
        cpu, wall = row["ratio_vs_loop_cpu_time"], row["ratio_vs_loop_wall"]
        lean = row["variant"] == "module_lean"
        out.append(
            Headline(
                "step_overhead",
                f"{row['variant']} / hand-written loop, images per CPU-second (wall)",
                f"{cpu:.3f} ({wall:.3f})",
                ">= 0.97" if lean else "informational",
                _status(cpu >= 0.97) if lean else "info",
            )
        )
    return out


def summarise_forward_overhead(data: dict[str, Any]) -> list[Headline]:
    """``simclr_forward`` time over the hand-written forward's."""
    ratio = data["ratio_simclr_forward_over_hand_written"]
    return [
        Headline(
            "forward_overhead",
            "simclr_forward / hand-written forward, time per step",
            f"{ratio:.3f}",
            "informational",
            "info",
        )
    ]


def summarise_gpu_throughput(data: dict[str, Any]) -> list[Headline]:
    """Per setting: every variant's images/s over fp32."""
    device = data.get("device", "?")
    return [
        Headline(
            "gpu_throughput",
            f"{r['setting']} on {device}: {r['variant']} / fp32 ({r['images_per_s']:.0f} images/s)",
            f"{r['ratio_vs_fp32']:.2f}x",
            "informational",
            "info",
        )
        for r in data["rows"]
        if "ratio_vs_fp32" in r and r["variant"] != "fp32"
    ]


def summarise_quality(data: dict[str, Any]) -> list[Headline]:
    """Issue goals per row (``_quality_report.goals``): SSL rows on CNNs beat raw pixels on kNN-20
    and linear, SSL rows on ViTs beat their random-init ViT by 5 linear points, the best SSL row
    is within 3 points of supervised; rows the issues ask for and the file lacks: not measured."""
    from _quality_report import ISSUE_ROWS, goals
    from _quality_rows import upgrade

    meta = data["meta"]
    backbone = meta.get("backbone")
    expected = ISSUE_ROWS if backbone == "small_resnet_wide_2x2" and not meta.get("smoke") else ()
    return [
        Headline(
            "quality_fmnist",
            f"{g.row}{'' if g.ok is None else ' (' + g.commit + ')'}",
            g.value,
            g.goal,
            "not measured" if g.ok is None else _status(g.ok),
        )
        for g in goals(upgrade(data), backbone, expected)
    ]


def _speedups(bench: str, rows: list[dict[str, Any]], what: str, least: float) -> list[Headline]:
    """One headline per row: ``what`` formatted with the row, its ``speedup`` against ``least``."""
    return [
        Headline(
            bench,
            what.format(**r),
            f"{r['speedup']:.2f}x",
            f">= {least:g}",
            _status(r["speedup"] >= least),
        )
        for r in rows
    ]


def summarise_small_map_conv(data: dict[str, Any]) -> list[Headline]:
    """SmallResNet fwd+bwd throughput with the dense 2x2 path over ``nn.Conv2d``'s."""
    what = (
        "SmallResNet {net}: SmallMapConv2d / nn.Conv2d, views/s "
        "({dense_views_per_s:.0f} vs {conv2d_views_per_s:.0f})"
    )
    return _speedups("small_map_conv", data["small_resnet"], what, 1.0)


def summarise_vit_attention(data: dict[str, Any]) -> list[Headline]:
    """CPU ViT fwd+bwd with timm's explicit attention (``attention="auto"`` on CPUs) over fused."""
    what = (
        "{net} {input}: explicit / fused attention, images/s "
        "({math_images_per_s:.0f} vs {fused_images_per_s:.0f})"
    )
    return _speedups("vit_attention", data["rows"], what, 0.95)


def summarise_data_pipeline(data: dict[str, Any]) -> list[Headline]:
    """Image folder: DataModule batches/s over torchvision ImageFolder + v2 (equal workers); RSS."""
    out = []
    for row in data["rows"]:
        if "speedup_vs_torchvision" not in row:
            continue
        what = (
            f"{data['files']} JPEGs, two-view SimCLR {data['view_size']} px, batch "
            f"{data['batch']}: DataModule / torchvision ImageFolder + v2 ({row['workers']} workers)"
        )
        ratio = row["speedup_vs_torchvision"]
        out.append(
            Headline("data_pipeline", what, f"{ratio:.2f}x", ">= 1.5x", _status(ratio >= 1.5))
        )
    rss = data.get("peak_rss_mb", {})
    if len(rss) >= 2:
        small, large = sorted(rss, key=int)[0], sorted(rss, key=int)[-1]
        growth = rss[large]["main_mb"] / rss[small]["main_mb"]
        what = f"peak RSS (main) {large} vs {small} files"
        out.append(
            Headline("data_pipeline", what, f"{growth:.2f}x", "<= 1.1x", _status(growth <= 1.1))
        )
    return out
