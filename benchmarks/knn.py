"""Validation-time kNN: OnlineKNN's search paths vs chunked torch brute force; its epoch share.

Run: ``uv run python benchmarks/knn.py [--quick] [--repeats N] [--threads N] [--skip-share]``.

Times are CPU seconds of this process (``time.process_time``) with ``--threads`` threads (1 by
default): on a machine whose cores are shared with other jobs, CPU time is what the search costs,
while wall time mostly measures the other jobs. Wall times are recorded too.

Search: bank of 50k x 512 training embeddings (100 classes), 10k validation queries in
validation batches of 512, k=20, cosine similarity with exp(sim / T) voting. The baseline is the
chunked brute force of solo-learn's ``WeightedKNNClassifier`` (also used by stable-pretraining):
per chunk of queries a dense similarity matrix against the whole bank, ``topk``, then one-hot
votes weighted by exp(sim / T). Timed per validation epoch, in the same process and thread count:

* torch brute force with 20x larger chunks (a stronger baseline);
* faiss exact, index rebuilt every epoch (what OnlineKNN did before);
* OnlineKNN's paths: its bank copy synced with the queue (all rows new: the bank turned over
  during the epoch, as in the default run; and 10% new), then faiss brute force (``backend=
  "faiss"``) or the exact torch search (``backend="torch"``) in float32 and with the proven
  bfloat16 screen (the default of ``backend="auto"`` on CPUs with bfloat16 instructions and on
  CUDA without faiss-gpu);
* faiss IVF (approximate, for information).

The exact paths' predictions are asserted equal to the baseline's.

Share: one epoch of the default ``ssl-train`` run (SimCLR, SmallResNet, embedded Fashion-MNIST,
OnlineProbe + OnlineKNN) with every hook of the two callbacks timed; the share is their time over
the epoch's wall time (training and validation). Prints a table and writes
``benchmarks/results/knn.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import torch
import torch.nn.functional as F

from ssl_callbacks import build_index, search, torch_knn, weighted_vote
from ssl_callbacks._mirror import BankMirror
from ssl_callbacks._ring import RingBuffer
from ssl_callbacks.neighbours import faiss_knn, fast_bf16, resolve_backend

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "knn.json"
TEMPERATURE = 0.07
VAL_BATCH = 512  # the default ssl-train validation batch
SOLO_LEARN_MAX_MATRIX = int(5e6)  # solo-learn's default max_distance_matrix_size
LARGE_MAX_MATRIX = int(1e8)  # a stronger baseline: 20x larger chunks (400 MB temporaries)


def torch_brute_force(
    bank, bank_labels, queries, k, num_classes, temperature=TEMPERATURE, max_matrix=None
):
    """solo-learn's WeightedKNNClassifier.compute (cosine), chunked over the queries."""
    max_matrix = SOLO_LEARN_MAX_MATRIX if max_matrix is None else max_matrix
    bank = F.normalize(bank, dim=1)
    queries = F.normalize(queries, dim=1)
    chunk = max(1, min(max_matrix // bank.shape[0], queries.shape[0]))
    preds = []
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk]
        b = q.shape[0]
        similarities = q @ bank.T
        similarities, indices = similarities.topk(k, largest=True, sorted=True)
        candidates = bank_labels.view(1, -1).expand(b, -1)
        retrieved = torch.gather(candidates, 1, indices)
        one_hot = torch.zeros(b * k, num_classes)
        one_hot.scatter_(1, retrieved.view(-1, 1), 1)
        weights = similarities.div_(temperature).exp_()
        probs = (one_hot.view(b, -1, num_classes) * weights.view(b, -1, 1)).sum(1)
        preds.append(probs)
    return torch.cat(preds)


def faiss_rebuild(bank, bank_labels, queries, k, num_classes, index="Flat", params=None):
    """OnlineKNN before: one index built per validation epoch, searched per validation batch."""
    idx = build_index(bank, "cosine", index, params)
    out = []
    for start in range(0, queries.shape[0], VAL_BATCH):
        scores, ids = search(idx, queries[start : start + VAL_BATCH], k, "cosine")
        out.append(weighted_vote(scores, bank_labels[ids], num_classes, "cosine", TEMPERATURE))
    return torch.cat(out)


class Ours:
    """OnlineKNN's validation epoch: sync its bank copy with the queues, search per batch."""

    def __init__(self, bank, bank_labels, backend: str, screen: bool = False) -> None:
        self.feats = RingBuffer(bank.shape[0], name="feats")
        self.labels = RingBuffer(bank.shape[0], name="labels")
        self.feats.push(bank)
        self.labels.push(bank_labels)
        self.backend = backend
        self.screen = screen
        self.mirror = BankMirror(bank.shape[0], "cosine")
        self.stats: dict[str, int] = {}

    def queue(self, rows, labels) -> None:
        """Training pushes (not timed: they happen during training)."""
        self.feats.push(rows)
        self.labels.push(labels)

    def epoch(self, queries, k, num_classes):
        self.mirror.sync(self.feats, self.labels, torch.device("cpu"), self.screen)
        rows, bank_labels, screen = self.mirror.rows, self.mirror.labels, self.mirror.screen
        out = []
        for start in range(0, queries.shape[0], VAL_BATCH):
            q = queries[start : start + VAL_BATCH]
            if self.backend == "torch":
                # As OnlineKNN: stop screening once it redoes over a quarter of the queries.
                redone, screened = self.stats.get("redone", 0), self.stats.get("screened", 0)
                use = screen if redone <= 0.25 * screened else None
                scores, ids = torch_knn(rows, q, k, "cosine", use, stats=self.stats)
            else:
                scores, ids = faiss_knn(rows, q, k, "cosine")
            out.append(weighted_vote(scores, bank_labels[ids], num_classes, "cosine", TEMPERATURE))
        return torch.cat(out)


WALL: dict[str, float] = {}  # wall-clock medians by label, for the record


def timed(fn, repeats, before=None, label=None):
    """Median CPU seconds of ``fn`` (and its wall median under ``WALL[label]``)."""
    cpu, wall, out = [], [], None
    for _ in range(repeats):
        if before is not None:
            before()
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    if label:
        WALL[label] = statistics.median(wall)
    return statistics.median(cpu), out


def search_rows(args) -> dict[str, Any]:
    n_bank, n_query = (10_000, 2_000) if args.quick else (50_000, 10_000)
    dim, k, num_classes = 512, 20, 100
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(num_classes, dim, generator=g)
    bank_labels = torch.randint(0, num_classes, (n_bank,), generator=g)
    query_labels = torch.randint(0, num_classes, (n_query,), generator=g)
    bank = centers[bank_labels] + 3.0 * torch.randn(n_bank, dim, generator=g)
    queries = centers[query_labels] + 3.0 * torch.randn(n_query, dim, generator=g)
    r = args.repeats

    faiss_rebuild(bank[:2000], bank_labels[:2000], queries[:100], k, num_classes)  # warm-up
    torch_brute_force(bank[:2000], bank_labels[:2000], queries[:100], k, num_classes)
    t_base, ref = timed(
        lambda: torch_brute_force(bank, bank_labels, queries, k, num_classes), r, label="base"
    )
    t_large, ref_large = timed(
        lambda: torch_brute_force(bank, bank_labels, queries, k, num_classes, LARGE_MAX_MATRIX),
        r,
        label="large",
    )
    t_rebuild, rebuilt = timed(
        lambda: faiss_rebuild(bank, bank_labels, queries, k, num_classes), r, label="rebuild"
    )
    results = {}
    tenth = n_bank // 10
    for backend, screen in (("faiss", False), ("torch", False), ("torch_screen", True)):
        ours = Ours(bank, bank_labels, backend.split("_")[0], screen)
        everything_new = lambda o=ours: o.mirror.clear()  # noqa: E731  (bank turned over)
        t_full, pred = timed(
            lambda o=ours: o.epoch(queries, k, num_classes), r, everything_new, f"ours_{backend}"
        )
        t_tenth = None
        if not screen:
            new = lambda o=ours, t=tenth: o.queue(bank[-t:], bank_labels[-t:])  # noqa: E731
            t_tenth, _ = timed(
                lambda o=ours: o.epoch(queries, k, num_classes), r, new, f"ours_{backend}_tenth"
            )
        results[backend] = (t_full, t_tenth, pred, ours)
    nlist = 64 if args.quick else 256
    ivf = f"IVF{nlist},Flat"
    t_ivf, approx = timed(
        lambda: faiss_rebuild(bank, bank_labels, queries, k, num_classes, ivf, "nprobe=16"),
        r,
        label="ivf",
    )

    pred_ref = ref.argmax(1)
    mismatches = {
        "torch_large_chunks": int((ref_large.argmax(1) != pred_ref).sum()),
        "faiss_rebuild": int((rebuilt.argmax(1) != pred_ref).sum()),
        "ours_faiss": int((results["faiss"][2].argmax(1) != pred_ref).sum()),
        "ours_torch": int((results["torch"][2].argmax(1) != pred_ref).sum()),
        "ours_torch_screen": int((results["torch_screen"][2].argmax(1) != pred_ref).sum()),
    }
    # Exact paths agree up to near-ties of the summed votes (float rounding order differs).
    allowed = max(1, n_query // 500)
    assert max(mismatches.values()) <= allowed, f"exact paths disagree: {mismatches}"
    stats = results["torch_screen"][3].stats
    cpu = torch.device("cpu")
    auto = {"faiss-cpu": "faiss", "torch": "torch_screen" if fast_bf16(cpu) else "torch"}[
        resolve_backend("auto", cpu)
    ]
    t_ours = results[auto][0]
    return {
        "bank": [n_bank, dim],
        "queries": n_query,
        "val_batch": VAL_BATCH,
        "k": k,
        "num_classes": num_classes,
        "baseline_queries_per_chunk": max(1, min(SOLO_LEARN_MAX_MATRIX // n_bank, n_query)),
        "torch_bruteforce_s": t_base,
        "torch_large_chunks_s": t_large,
        "faiss_rebuild_s": t_rebuild,
        "ours_faiss_s": results["faiss"][0],
        "ours_faiss_tenth_new_s": results["faiss"][1],
        "ours_torch_s": results["torch"][0],
        "ours_torch_tenth_new_s": results["torch"][1],
        "ours_torch_screen_s": results["torch_screen"][0],
        "ours_auto_backend": auto,
        "ours_s": t_ours,
        "speedup": t_base / t_ours,
        "speedup_vs_large_chunks": t_large / t_ours,
        "speedup_faiss_rebuild": t_base / t_rebuild,
        "screen_redone_fraction": stats.get("redone", 0) / max(1, stats.get("screened", 0)),
        "faiss_ivf_s": t_ivf,
        "ivf_index": ivf,
        "ivf_speedup": t_base / t_ivf,
        "ivf_prediction_agreement": float((approx.argmax(1) == pred_ref).float().mean()),
        "knn_top1_toy": float((pred_ref == query_labels).float().mean()),
        "prediction_mismatches": mismatches,
        "wall_s": dict(WALL),
    }


def epoch_share(args) -> dict[str, Any]:
    """Time every hook of OnlineKNN and OnlineProbe in one epoch of the default ssl-train run."""
    import lightning.pytorch as pl

    from ssl_callbacks import OnlineKNN, OnlineProbe
    from ssl_train import compose
    from ssl_train.runner import build, prepare

    overrides = [
        "trainer.max_epochs=1",
        "progress_bar=none",
        "plots=false",
        "summary=false",
        "export_backbone=false",
    ]
    if args.quick:
        overrides += ["data.train.limit=2048", "data.val.limit=1024"]
    spent: dict[str, float] = {}

    class EpochClock(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.start, self.start_cpu = time.perf_counter(), time.thread_time()

        def on_train_epoch_end(self, trainer, pl_module):
            spent["epoch"] = spent.get("epoch", 0.0) + time.perf_counter() - self.start
            spent["epoch_cpu"] = spent.get("epoch_cpu", 0.0) + time.thread_time() - self.start_cpu

    def clock(callback, name):
        hook = getattr(callback, name)

        def timed_hook(*a, **kw):
            start, start_cpu = time.perf_counter(), time.thread_time()
            try:
                return hook(*a, **kw)
            finally:
                key = type(callback).__name__
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - start
                spent[f"{key}_cpu"] = spent.get(f"{key}_cpu", 0.0) + time.thread_time() - start_cpu
                spent[f"{key}.{name}"] = spent.get(f"{key}.{name}", 0.0) + (
                    time.perf_counter() - start
                )

        setattr(callback, name, timed_hook)

    with tempfile.TemporaryDirectory() as scratch:
        cfg, run_dir, _ = prepare(compose(overrides), run_dir=scratch)
        datamodule, module, trainer, _ = build(cfg, run_dir)
        watched = [cb for cb in trainer.callbacks if isinstance(cb, OnlineKNN | OnlineProbe)]
        for cb in watched:
            for name in dir(type(cb)):
                if name.startswith("on_") and callable(getattr(cb, name)):
                    clock(cb, name)
        trainer.callbacks.append(EpochClock())
        trainer.fit(module, datamodule=datamodule)
    knn = next(cb for cb in watched if isinstance(cb, OnlineKNN))
    callbacks_s = spent.get("OnlineKNN", 0.0) + spent.get("OnlineProbe", 0.0)
    return {
        "share_overrides": overrides,
        "share_epoch_s": spent["epoch"],
        "share_knn_s": spent.get("OnlineKNN", 0.0),
        "share_probe_s": spent.get("OnlineProbe", 0.0),
        "share_hooks_s": {k: v for k, v in spent.items() if "." in k},
        "share_knn_path": knn.path,
        "share": callbacks_s / spent["epoch"],
        "share_epoch_thread_cpu_s": spent["epoch_cpu"],
        "share_cpu": (spent.get("OnlineKNN_cpu", 0.0) + spent.get("OnlineProbe_cpu", 0.0))
        / spent["epoch_cpu"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k x 512 bank, 2k queries")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-share", action="store_true", help="no ssl-train epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch and faiss threads")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    data = {"benchmark": "knn", "quick": args.quick, "repeats": args.repeats}
    data.update(search_rows(args), threads=torch.get_num_threads())
    torch.set_num_threads(default_threads)  # the ssl-train epoch runs as ssl-train does
    if not args.skip_share:
        data.update(epoch_share(args))
    data.update(
        share_threads=torch.get_num_threads(),
        platform=platform.platform(),
        torch=torch.__version__,
        faiss=faiss.__version__,
        date=time.strftime("%Y-%m-%d"),
    )
    base = data["torch_bruteforce_s"]
    print(
        f"kNN: bank {data['bank'][0]} x {data['bank'][1]}, {data['queries']} queries in batches "
        f"of {VAL_BATCH}, k={data['k']}, {data['num_classes']} classes, {data['threads']} "
        f"threads, faiss {faiss.__version__}"
    )
    rows = [
        (f"torch brute force (solo-learn, {data['baseline_queries_per_chunk']}/chunk)", base),
        ("torch brute force, 20x larger chunks", data["torch_large_chunks_s"]),
        ("faiss exact, index rebuilt per epoch (before)", data["faiss_rebuild_s"]),
        ('OnlineKNN backend="faiss", all rows new', data["ours_faiss_s"]),
        ('OnlineKNN backend="faiss", 10% rows new', data["ours_faiss_tenth_new_s"]),
        ('OnlineKNN backend="torch", all rows new', data["ours_torch_s"]),
        ('OnlineKNN backend="torch", 10% rows new', data["ours_torch_tenth_new_s"]),
        ("torch, proven bf16 screen (auto on bf16 CPUs), all new", data["ours_torch_screen_s"]),
        (f"faiss {data['ivf_index']} nprobe=16 (approximate)", data["faiss_ivf_s"]),
    ]
    print(f"{'path (per validation epoch)':58s} {'CPU s':>9s} {'speed-up':>9s}")
    for name, t in rows:
        print(f"{name:58s} {t:9.3f} {base / t:8.2f}x")
    print(
        f"auto picks {data['ours_auto_backend']} here: {data['speedup']:.2f}x the baseline; "
        f"predictions off the baseline (near-ties): {data['prediction_mismatches']}; "
        f"screen redid {data['screen_redone_fraction']:.1%} of queries in float32; IVF agrees on "
        f"{data['ivf_prediction_agreement']:.2%}"
    )
    if "share" in data:
        print(
            f"default ssl-train epoch {data['share_epoch_s']:.1f} s: OnlineKNN "
            f"{data['share_knn_s']:.2f} s ({data['share_knn_path']}) + OnlineProbe "
            f"{data['share_probe_s']:.2f} s = {data['share']:.1%} of the epoch wall time "
            f"({data['share_cpu']:.1%} of the main thread's CPU time)"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
