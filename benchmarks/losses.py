"""Forward+backward time of ssl_losses against straightforward reference implementations.

Run: ``uv run python benchmarks/losses.py [--quick] [--device cpu|cuda]``.

Each row times ``loss_fn(z_a, z_b).backward()`` (median of several repeats after warm-up) for
our loss and for a reference written the usual way (SimCLR's masked similarity matrix; the
official Barlow Twins / VICReg code with the explicit ``d x d`` matrices), in the same run.
The multi-view rows time DINOLoss (out_dim 65536, 2 global + 6 local crops, batch 64; ``d`` is
``out_dim``) and SwAVLoss (3000 prototypes, 2 + 6 crops, batch 256; ``d`` is the number of
prototypes) against the official code's loss (``_multiview_losses.py``). Peers (lightly,
stable-pretraining) are timed when importable and skipped otherwise. Prints a table and writes
``benchmarks/results/losses.json``; ``--only DINOLoss,SwAVLoss`` re-times those rows and keeps
the file's other rows.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _multiview_losses import dino_case, swav_case

from ssl_losses import BarlowTwinsLoss, NTXEntLoss, VICRegLoss

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "losses.json"

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# ------------------------------------------------------------------ references (the usual code)


def ref_ntxent(z_i: torch.Tensor, z_j: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR NT-Xent as commonly written: masked similarity matrix, positives first."""
    n = z_i.shape[0]
    z = F.normalize(torch.cat([z_i, z_j]), dim=1)
    sim = z @ z.T
    labels = torch.cat([torch.arange(n), torch.arange(n)]).to(z.device)
    labels = (labels[None, :] == labels[:, None]).float()
    mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    labels = labels[~mask].view(2 * n, -1)
    sim = sim[~mask].view(2 * n, -1)
    positives = sim[labels.bool()].view(2 * n, -1)
    negatives = sim[~labels.bool()].view(2 * n, -1)
    logits = torch.cat([positives, negatives], dim=1) / temperature
    target = torch.zeros(2 * n, dtype=torch.long, device=z.device)
    return F.cross_entropy(logits, target)


def _off_diagonal(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def ref_barlow(z_a: torch.Tensor, z_b: torch.Tensor, lambd: float = 0.005) -> torch.Tensor:
    """Official Barlow Twins code: BatchNorm1d(affine=False) then the d x d matrix."""
    n = z_a.shape[0]
    a = F.batch_norm(z_a, None, None, training=True, eps=1e-5)
    b = F.batch_norm(z_b, None, None, training=True, eps=1e-5)
    c = a.T @ b / n
    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
    off_diag = _off_diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def ref_vicreg(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Official VICReg code (facebookresearch/vicreg), one process."""
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 1e-4)
    std_y = torch.sqrt(y.var(dim=0) + 1e-4)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = _off_diagonal(cov_x).pow(2).sum() / d + _off_diagonal(cov_y).pow(2).sum() / d
    return 25.0 * repr_loss + 25.0 * std_loss + 1.0 * cov_loss


# ------------------------------------------------------------------ optional peers


def _peers(kind: str) -> dict[str, LossFn]:
    """Public implementations of the same loss that are importable here (none is required)."""
    out: dict[str, LossFn] = {}
    try:
        from lightly import loss as lightly_loss

        out["lightly"] = {
            "ntxent": lambda: lightly_loss.NTXentLoss(temperature=0.5, gather_distributed=False),
            "barlow": lambda: lightly_loss.BarlowTwinsLoss(
                lambda_param=0.005, gather_distributed=False
            ),
            "vicreg": lambda: lightly_loss.VICRegLoss(gather_distributed=False),
        }[kind]()
    except Exception:  # an absent or incompatible optional peer is skipped, never fatal
        pass
    try:
        import stable_pretraining

        # This workspace's app ships a shim of the same name: only time the real package.
        if not Path(stable_pretraining.__file__).resolve().is_relative_to(ROOT):
            from stable_pretraining import losses as spt

            names = {"ntxent": "NTXEntLoss", "barlow": "BarlowTwinsLoss", "vicreg": "VICRegLoss"}
            cls = getattr(spt, names[kind], None)
            if cls is not None:
                out["stable-pretraining"] = cls()
    except Exception:  # an absent or incompatible optional peer is skipped, never fatal
        pass
    return out


# ------------------------------------------------------------------ timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_tensors(
    fns: dict[str, Callable[..., torch.Tensor]],
    tensors: list[torch.Tensor],
    device: torch.device,
    warmup: int,
    repeats: int,
) -> dict[str, float]:
    """Median milliseconds of one ``fn(*tensors).backward()`` per implementation.

    The implementations take turns within every round (rotating the order), so that load from
    other processes on a shared machine hits all of them alike.
    """
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(warmup + repeats):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            for t in tensors:
                t.grad = None
            _sync(device)
            start = time.perf_counter()
            fns[name](*tensors).backward()
            _sync(device)
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def time_interleaved(
    fns: dict[str, LossFn], n: int, d: int, device: torch.device, warmup: int, repeats: int
) -> dict[str, float]:
    """Median milliseconds of one forward+backward of ``fn(z_a, z_b)`` per implementation."""
    g = torch.Generator().manual_seed(0)
    z_a = torch.randn(n, d, generator=g).to(device).requires_grad_()
    z_b = torch.randn(n, d, generator=g).to(device).requires_grad_()
    return time_tensors(fns, [z_a, z_b], device, warmup, repeats)


def _row(name: str, n: int, d: int, ms: dict[str, float]) -> dict:
    ours_ms, ref_ms = ms.pop("ours"), ms.pop("reference")
    fastest_public = min([ref_ms, *ms.values()])
    return {
        "loss": name,
        "B": n,
        "d": d,
        "ours_ms": round(ours_ms, 3),
        "reference_ms": round(ref_ms, 3),
        "ratio_ours_over_reference": round(ours_ms / ref_ms, 3),
        "peers_ms": {k: round(v, 3) for k, v in ms.items()},
        "ratio_ours_over_fastest": round(ours_ms / fastest_public, 3),
    }


def _merge(old_rows: list[dict], new_rows: list[dict]) -> list[dict]:
    """The old rows with those of the same loss, B and d replaced by the new ones (new last)."""
    key = lambda r: (r["loss"], r["B"], r["d"])  # noqa: E731
    fresh = {key(r) for r in new_rows}
    return [r for r in old_rows if key(r) not in fresh] + new_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--only", default=None, help="comma-separated loss names to re-time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warmup, repeats = (1, 5) if args.quick else (1, 7)
    ntxent_sizes = [256] if args.quick else [256, 512, 1024]
    stat_dims = [2048] if args.quick else [2048, 8192]

    only = None if args.only is None else {name.strip() for name in args.only.split(",")}
    cases: list[tuple[str, str, int, int, LossFn, LossFn]] = []
    for b in ntxent_sizes:
        cases.append(("NTXEntLoss", "ntxent", b, 128, NTXEntLoss(0.5), ref_ntxent))
    for d in stat_dims:
        cases.append(("BarlowTwinsLoss", "barlow", 256, d, BarlowTwinsLoss(0.005), ref_barlow))
    for d in stat_dims:
        cases.append(("VICRegLoss", "vicreg", 256, d, VICRegLoss(), ref_vicreg))

    rows = []
    for name, kind, n, d, ours, ref in cases:
        if only is not None and name not in only:
            continue
        ms = time_interleaved(
            {"ours": ours, "reference": ref, **_peers(kind)}, n, d, device, warmup, repeats
        )
        rows.append(_row(name, n, d, ms))
        print(f"done {name} B={n} d={d}", flush=True)
    multiview = [
        ("DINOLoss", "DINOLoss 2+6 crops", 64, 65536, lambda: dino_case(2, 6, 64, 65536, device)),
        ("SwAVLoss", "SwAVLoss 2+6 crops", 256, 3000, lambda: swav_case(2, 6, 256, 3000, device)),
    ]
    for name, label, n, d, make_case in multiview:
        if only is not None and name not in only:
            continue
        tensors, fns = make_case()
        rows.append(_row(label, n, d, time_tensors(fns, tensors, device, warmup, repeats)))
        print(f"done {label} B={n} d={d}", flush=True)
    if only is not None and args.out.exists():
        rows = _merge(json.loads(args.out.read_text())["rows"], rows)

    peer_names = sorted({p for r in rows for p in r["peers_ms"]})
    header = [
        "loss",
        "B",
        "d",
        "ours ms",
        "reference ms",
        "ratio",
        *[f"{p} ms" for p in peer_names],
    ]
    header.append("ours/fastest")
    lines = [header]
    for r in rows:
        line = [
            r["loss"],
            str(r["B"]),
            str(r["d"]),
            f"{r['ours_ms']:.2f}",
            f"{r['reference_ms']:.2f}",
        ]
        line.append(f"{r['ratio_ours_over_reference']:.2f}")
        line += [f"{r['peers_ms'][p]:.2f}" if p in r["peers_ms"] else "-" for p in peer_names]
        line.append(f"{r['ratio_ours_over_fastest']:.2f}")
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "forward+backward, median ms",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "warmup": warmup,
        "repeats": repeats,
        "rows": rows,
    }
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
