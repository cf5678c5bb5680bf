"""Image-folder pipeline throughput: ssl_data.DataModule vs torchvision ImageFolder + v2.

Generates an image folder of photo-like 256x256 RGB JPEGs (10 classes; smooth random colour
fields with edges and texture, not flat colours) in a temporary folder, then measures delivered
two-view SimCLR batches per second (96 px views, batch 256, normalised float32, ready on the
device: here the CPU) for

- ``ours``: ``ssl_data.DataModule`` over ``get_dataset("imagefolder")``: ``decode_image`` and the
  random-resized crop of the whole image (plus flip) in ``W`` workers, uint8 views out of the
  workers, then the photometric ops (jitter, grayscale, normalise) batched in the main process
  (``on_after_batch_transfer``);
- ``torchvision``: ``ImageFolder`` (PIL decode) + the same recipe as per-sample
  ``transforms.v2`` (``presets.torchvision_simclr``) in a ``DataLoader`` with ``W`` workers;
- ``in-memory``: the same images decoded once to 96x96 uint8 (``TensorImageDataset``), the whole
  recipe batched in the main process (no workers);

for ``W`` in 1 and 2, all in the same run (ratios compare like with like). The main process uses
one torch thread in every row. The first ``--unique`` images are generated, the rest of the
``--files`` are hard links to them. Peak RSS (main process plus workers) while iterating the
first 5k files and all files is measured in fresh subprocesses.

    uv run python benchmarks/data_pipeline.py [--files 20000] [--batches 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
SIZE, BATCH, CLASSES = 96, 256, 10
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def generate(root: Path, n: int, unique: int, seed: int = 0) -> None:
    """Write ``n`` photo-like 256x256 JPEGs into ``root/class_k/`` (quality 90).

    The first ``unique`` are generated and encoded; the rest are hard links to them (same
    decode cost per file; encoding 20k images alone takes minutes on 2 busy cores).
    """
    import os

    from torchvision.io import encode_jpeg, write_file

    g = torch.Generator().manual_seed(seed)
    for k in range(CLASSES):
        (root / f"class_{k}").mkdir(parents=True, exist_ok=True)
    done = 0
    made: list[Path] = []
    while done < n:
        if done >= unique:
            path = root / f"class_{done % CLASSES}" / f"{done:06d}.jpg"
            os.link(made[done % len(made)], path)
            done += 1
            continue
        m = min(64, unique - done)
        coarse = torch.rand(m, 3, 6, 6, generator=g)
        fields = F.interpolate(coarse, size=(256, 256), mode="bicubic", align_corners=False)
        edges = (torch.rand(m, 1, 16, 16, generator=g) > 0.7).float()
        edges = F.interpolate(edges, size=(256, 256), mode="nearest") * 0.25
        texture = torch.rand(m, 3, 256, 256, generator=g) * 0.12
        images = ((fields + edges + texture).clamp(0, 1) * 255).to(torch.uint8)
        for i in range(m):
            path = root / f"class_{(done + i) % CLASSES}" / f"{done + i:06d}.jpg"
            write_file(str(path), encode_jpeg(images[i], quality=90))
            made.append(path)
        done += m


def _cycle(loader: Any) -> Any:
    while True:  # epoch after epoch, for runs with few files
        yield from loader


def _rate(batches: Any, after: Any, count: int, warmup: int = 2) -> float:
    it = _cycle(batches)
    for _ in range(warmup):
        after(next(it))
    start = time.perf_counter()
    for _ in range(count):
        out = after(next(it))
        assert out["image"].shape == (2 * BATCH, 3, SIZE, SIZE), out["image"].shape
    return count / (time.perf_counter() - start)


def ours(root: Path, workers: int, count: int) -> float:
    """Delivered batches/s of ssl_data.DataModule on the folder."""
    import ssl_data
    from ssl_data import presets

    ds = ssl_data.get_dataset("imagefolder", "train", root=root)
    dm = ssl_data.DataModule(
        train={"dataset": ds, "batch_size": BATCH, "num_workers": workers},
        views=presets.simclr_views(SIZE, mean=MEAN, std=STD),
        image_size=SIZE,
        in_channels=3,
    )
    return _rate(dm.train_dataloader(), lambda b: dm.transform_batch(b, "train"), count)


def torchvision_pipeline(root: Path, workers: int, count: int) -> float:
    """Delivered batches/s of ImageFolder + per-sample transforms.v2 two-view SimCLR."""
    from torch.utils.data import DataLoader
    from torchvision.datasets import ImageFolder

    from ssl_data import DictDataset, collate_views, presets

    ds = DictDataset(
        ImageFolder(str(root)), transform=presets.torchvision_simclr(SIZE, mean=MEAN, std=STD)
    )
    loader = DataLoader(
        ds,
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate_views,
        persistent_workers=True,
    )
    return _rate(loader, lambda b: b, count)


def in_memory(root: Path, count: int, limit: int) -> float:
    """Delivered batches/s of the in-memory path on the same images at 96 px."""
    import ssl_data
    from ssl_data import presets
    from ssl_data.crops import center_view
    from ssl_data.image_dataset import _decode

    ds = ssl_data.get_dataset("imagefolder", "train", root=root)
    n = min(len(ds), limit)
    images = torch.stack([center_view(_decode(ds.files.paths[i]), SIZE) for i in range(n)])
    mem = ssl_data.TensorImageDataset(images, torch.tensor(ds.files.labels[:n]))
    dm = ssl_data.DataModule(
        train={"dataset": mem, "batch_size": BATCH, "num_workers": 0},
        views=presets.simclr_views(SIZE, mean=MEAN, std=STD),
        image_size=SIZE,
    )
    return _rate(dm.train_dataloader(), lambda b: dm.transform_batch(b, "train"), count)


def peak_rss_child(root: str, files: int, batches: int) -> None:
    """(subprocess) Iterate ``batches`` batches over the first ``files`` files; print peak RSS."""
    import ssl_data
    from ssl_data import presets
    from ssl_data.files import scan_folder
    from ssl_data.image_dataset import ImageFileDataset

    listing = scan_folder(root)
    order = sorted(range(len(listing)), key=lambda i: listing.paths[i])[:files]
    sub = ssl_data.FileList(
        tuple(listing.paths[i] for i in order), tuple(listing.labels[i] for i in order)
    )
    ds = ImageFileDataset(sub, channels=3, eval_size=SIZE)
    dm = ssl_data.DataModule(
        train={"dataset": ds, "batch_size": BATCH, "num_workers": 2},
        views=presets.simclr_views(SIZE, mean=MEAN, std=STD),
        image_size=SIZE,
    )
    it = _cycle(dm.train_dataloader())
    for _ in range(batches):
        dm.transform_batch(next(it), "train")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    del it  # the workers exit, so RUSAGE_CHILDREN covers them
    workers = max(workers, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"main_mb": own / 1024, "worker_mb": workers / 1024}))


def peak_rss(root: Path, files: int, batches: int) -> dict[str, float]:
    """Peak RSS of a fresh process iterating the first ``files`` files."""
    cmd = [sys.executable, __file__, "--rss-child", str(root), str(files), str(batches)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    """Parse arguments, run every row, print the table and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=8, help="timed batches per row")
    parser.add_argument("--unique", type=int, default=2560, help="distinct images generated")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "data_pipeline.json")
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.rss_child:
        peak_rss_child(args.rss_child[0], int(args.rss_child[1]), int(args.rss_child[2]))
        return
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ssl_data_bench_") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        generate(root, args.files, min(args.unique, args.files))
        took = time.perf_counter() - start
        print(f"generated {args.files} JPEGs ({args.unique} distinct) in {took:.0f} s")
        for workers in (1, 2):
            tv = torchvision_pipeline(root, workers, args.batches)
            mine = ours(root, workers, args.batches)
            for name, rate in (("torchvision ImageFolder + v2", tv), ("ssl_data DataModule", mine)):
                rows.append({"pipeline": name, "workers": workers, "batches_per_s": rate})
            rows[-1]["speedup_vs_torchvision"] = mine / tv
        mem = in_memory(root, args.batches, limit=min(args.files, 4096))
        rows.append({"pipeline": "in-memory (96 px uint8)", "workers": 0, "batches_per_s": mem})
        small = min(5000, args.files)
        rss = {str(n): peak_rss(root, n, 6) for n in sorted({small, args.files})}
    print(f"\n{'pipeline':32} {'workers':>7} {'batches/s':>10} {'images/s':>9} {'vs tv':>6}")
    for r in rows:
        ratio = f"{r['speedup_vs_torchvision']:.2f}x" if "speedup_vs_torchvision" in r else ""
        ips = r["batches_per_s"] * BATCH
        print(
            f"{r['pipeline']:32} {r['workers']:>7} {r['batches_per_s']:>10.3f} {ips:>9.0f} "
            f"{ratio:>6}"
        )
    for n, v in rss.items():
        print(
            f"peak RSS, {n} files: main {v['main_mb']:.0f} MB, "
            f"largest worker {v['worker_mb']:.0f} MB"
        )
    result = {
        "files": args.files,
        "batch": BATCH,
        "view_size": SIZE,
        "timed_batches": args.batches,
        "distinct_images": min(args.unique, args.files),
        "main_threads": 1,
        "rows": rows,
        "peak_rss_mb": rss,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
