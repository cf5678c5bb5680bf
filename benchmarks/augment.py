"""Two-view SimCLR augmentation throughput: batched ssl_data pipeline vs torchvision v2 per sample.

Every row loads the same in-memory uint8 dataset through a torch DataLoader and produces flat
two-view batches (N*2 rows, float32, normalised) with the full SimCLR recipe (random resized crop,
flip, colour jitter p=0.8, grayscale p=0.2, blur p=0.5 at 96 px, normalise):

- ``torchvision-v2 per-sample``: ``DictDataset(..., transform=presets.torchvision_simclr)`` with
  ``collate_views``, ``num_workers=W`` (each worker runs one thread, as DataLoader sets).
- ``ssl_data batched, in workers``: ``TensorImageDataset`` (one ``index_select`` per batch) whose
  collate applies ``presets.simclr_views`` inside the same ``W`` workers.
- ``ssl_data batched, main process``: the batch is augmented after loading, in the main process
  with ``torch.set_num_threads(max(W, 1))`` threads, as ``ssl_data.DataModule`` does in
  ``on_after_batch_transfer``: the default path (the fused C kernel compiled when ssl-data was
  installed, ``ssl_data.augment.fused``; the eager ops if the install had no compiler) and the
  eager ops (``Compose(..., fused=False)``, what also runs on a GPU).
- GPU rows (only when CUDA is available): batched on the GPU, and kornia's per-image-parameter
  augmentations when kornia is installed.

Throughput is source images per second (each yields two views), timed over a second epoch with
persistent workers (worker start-up and warm-up excluded). All rows run in the same process,
so ratios compare like with like.

    uv run python benchmarks/augment.py [--quick] [--out benchmarks/results/augment.json]
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, get_worker_info

from ssl_data import DictDataset, TensorImageDataset, collate_batch, collate_views, presets
from ssl_data.augment import Compose, MultiViewAugment
from ssl_data.augment.fused import prebuilt_library

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


class AugmentCollate:
    """Collate for the worker rows: the batch from __getitems__ is augmented in the worker."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size
        self.aug = None

    def __call__(self, batch):
        if self.aug is None:  # one seed per worker so that workers draw different parameters
            info = get_worker_info()
            seed = 0 if info is None else info.id
            self.aug = presets.simclr_views(self.image_size, mean=MEAN, std=STD, seed=seed)
        return self.aug(batch)


def timed_epoch(loader, after=None) -> float:
    """Images/s of the second epoch (the first one starts the persistent workers and warms up)."""
    for _ in range(2):
        n = 0
        start = time.perf_counter()
        for batch in loader:
            out = after(batch) if after is not None else batch
            n += out["image"].shape[0] // 2
        elapsed = time.perf_counter() - start
    return n / elapsed


def make_loader(ds, batch: int, workers: int, collate) -> DataLoader:
    return DataLoader(
        ds,
        batch_size=batch,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=workers > 0,
    )


def bench_size(size: int, n_images: int, batch: int, workers: list[int]) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, size, size), generator=g, dtype=torch.uint8)
    ds = TensorImageDataset(images, torch.zeros(n_images, dtype=torch.long))
    rows = []
    threads = torch.get_num_threads()
    for w in workers:
        per_sample = DictDataset(ds, transform=presets.torchvision_simclr(size, mean=MEAN, std=STD))
        tv_ips = timed_epoch(make_loader(per_sample, batch, w, collate_views))
        rows.append(
            {
                "size": size,
                "method": "torchvision-v2 per-sample",
                "workers": w,
                "images_per_s": tv_ips,
            }
        )
        if w > 0:
            ips = timed_epoch(make_loader(ds, batch, w, AugmentCollate(size)))
            rows.append(
                {
                    "size": size,
                    "method": "ssl_data batched, in workers",
                    "workers": w,
                    "images_per_s": ips,
                    "speedup": ips / tv_ips,
                }
            )
        torch.set_num_threads(max(w, 1))
        default = presets.simclr_views(size, mean=MEAN, std=STD)
        kernel = prebuilt_library() if default.views[0].uses_fused_kernel else None
        path = "eager ops" if kernel is None else "installed fused kernel"
        eager = MultiViewAugment((Compose(default.views[0].transforms, fused=False), 2))
        for name, pipeline in ((f"default: {path}", default), ("eager ops", eager)):
            ips = timed_epoch(make_loader(ds, batch, 0, collate_batch), after=pipeline)
            rows.append(
                {
                    "size": size,
                    "method": f"ssl_data batched, main ({max(w, 1)} threads, {name})",
                    "workers": w,
                    "images_per_s": ips,
                    "speedup": ips / tv_ips,
                    "default": pipeline is default,
                    "kernel": str(kernel) if pipeline is default and kernel else None,
                }
            )
        torch.set_num_threads(threads)
    if torch.cuda.is_available():
        rows += bench_gpu(images, size, batch)
    return rows


def bench_gpu(images: torch.Tensor, size: int, batch: int) -> list[dict]:
    dev = torch.device("cuda")
    gpu = images.to(dev)
    aug = presets.simclr_views(size, mean=MEAN, std=STD)

    def run(fn) -> float:
        for i in range(0, min(len(gpu), 4 * batch), batch):
            fn(gpu[i : i + batch])
        torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(gpu), batch):
            fn(gpu[i : i + batch])
        torch.cuda.synchronize()
        return len(gpu) / (time.perf_counter() - start)

    rows = [
        {
            "size": size,
            "method": "ssl_data batched, cuda",
            "workers": 0,
            "images_per_s": run(lambda x: aug({"image": x})),
        }
    ]
    try:
        import kornia.augmentation as K
    except ImportError:
        return rows
    blur = [K.RandomGaussianBlur((presets.blur_kernel_size(size),) * 2, (0.1, 2.0), p=0.5)]
    pipe = torch.nn.Sequential(
        K.RandomResizedCrop((size, size), scale=(0.08, 1.0)),
        K.RandomHorizontalFlip(),
        K.ColorJitter(0.8, 0.8, 0.8, 0.2, p=0.8),
        K.RandomGrayscale(p=0.2),
        *(blur if size > 64 else []),
        K.Normalize(torch.tensor(MEAN), torch.tensor(STD)),
    ).to(dev)
    rows.append(
        {
            "size": size,
            "method": "kornia, cuda",
            "workers": 0,
            "images_per_s": run(lambda x: pipe(x.float().div(255).repeat(2, 1, 1, 1))),
        }
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, workers=2 only")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "augment.json"))
    args = parser.parse_args()
    workers = [2] if args.quick else [0, 2]
    if args.quick:
        plan = [(32, 1024, 128), (96, 384, 64)]
    else:
        plan = [(32, 4096, 256), (96, 1024, 128)]
    rows = []
    for size, n, batch in plan:
        rows += bench_size(size, n, batch, workers)
    print(f"{'size':>4}  {'method':<46} {'workers':>7} {'images/s':>10} {'vs tv':>7}")
    for r in rows:
        speed = f"{r['speedup']:.1f}x" if "speedup" in r else ""
        print(
            f"{r['size']:>4}  {r['method']:<46} {r['workers']:>7} {r['images_per_s']:>10.0f} "
            f"{speed:>7}"
        )
    result = {
        "benchmark": "two-view SimCLR augmentation throughput (source images/s)",
        "quick": args.quick,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
