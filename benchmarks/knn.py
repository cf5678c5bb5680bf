"""Validation-time kNN: the faiss path of ``ssl_callbacks.OnlineKNN`` vs chunked torch brute force.

Run: ``uv run python benchmarks/knn.py [--quick] [--repeats N]``.

Bank of 50k x 512 training embeddings (100 classes), 10k validation queries, k=20, cosine
similarity with exp(sim / T) voting. The baseline is the chunked brute force of solo-learn's
``WeightedKNNClassifier`` (also used by stable-pretraining): per chunk of queries a dense
similarity matrix against the whole bank, ``topk``, then one-hot votes weighted by exp(sim / T).
Our path is what the callback runs once per validation epoch: build one exact faiss
``IndexFlatIP`` of the L2-normalised bank, search all queries, weighted vote. Both run in the same
process with the same thread count; the predictions are asserted equal. Prints a table and
writes ``benchmarks/results/knn.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import faiss
import torch
import torch.nn.functional as F

from ssl_callbacks import build_index, search, weighted_vote

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "knn.json"
TEMPERATURE = 0.07


SOLO_LEARN_MAX_MATRIX = int(5e6)  # solo-learn's default max_distance_matrix_size
LARGE_MAX_MATRIX = int(1e8)  # a stronger baseline: 20x larger chunks (400 MB temporaries)


def torch_brute_force(
    bank, bank_labels, queries, k, num_classes, temperature=TEMPERATURE, max_matrix=None
):
    """solo-learn's WeightedKNNClassifier.compute (cosine), chunked over the queries.

    ``max_matrix`` caps the elements of one similarity chunk, as solo-learn's
    ``max_distance_matrix_size`` does (default 5e6 there and here).
    """
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


def faiss_path(
    bank, bank_labels, queries, k, num_classes, temperature=TEMPERATURE, index="Flat", params=None
):
    """What OnlineKNN does per validation epoch: one index, one search, weighted votes."""
    index = build_index(bank, "cosine", index, params)
    scores, ids = search(index, queries, k, "cosine")
    return weighted_vote(scores, bank_labels[ids], num_classes, "cosine", temperature)


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k x 512 bank, 2k queries")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n_bank, n_query = (10_000, 2_000) if args.quick else (50_000, 10_000)
    dim, k, num_classes = 512, 20, 100

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(num_classes, dim, generator=g)
    bank_labels = torch.randint(0, num_classes, (n_bank,), generator=g)
    query_labels = torch.randint(0, num_classes, (n_query,), generator=g)
    bank = centers[bank_labels] + 3.0 * torch.randn(n_bank, dim, generator=g)
    queries = centers[query_labels] + 3.0 * torch.randn(n_query, dim, generator=g)

    # Warm-up both paths once (BLAS/OpenMP pools), then alternate the timed repeats.
    faiss_path(bank[:2000], bank_labels[:2000], queries[:100], k, num_classes)
    torch_brute_force(bank[:2000], bank_labels[:2000], queries[:100], k, num_classes)
    t_torch, ref = timed(
        lambda: torch_brute_force(bank, bank_labels, queries, k, num_classes), args.repeats
    )
    t_large, ref_large = timed(
        lambda: torch_brute_force(
            bank, bank_labels, queries, k, num_classes, max_matrix=LARGE_MAX_MATRIX
        ),
        args.repeats,
    )
    assert torch.equal(ref_large.argmax(1), ref.argmax(1))
    t_faiss, ours = timed(
        lambda: faiss_path(bank, bank_labels, queries, k, num_classes), args.repeats
    )
    nlist = 64 if args.quick else 256
    ivf = f"IVF{nlist},Flat"
    t_ivf, approx = timed(
        lambda: faiss_path(bank, bank_labels, queries, k, num_classes, 0.07, ivf, "nprobe=16"),
        args.repeats,
    )
    agreement = float((approx.argmax(1) == ref.argmax(1)).float().mean())

    pred_ref, pred_ours = ref.argmax(1), ours.argmax(1)
    mismatches = int((pred_ref != pred_ours).sum())
    assert mismatches == 0, f"{mismatches} predictions differ between faiss and torch"
    accuracy = float((pred_ours == query_labels).float().mean())

    bank_mb = (bank.numel() * bank.element_size() + bank_labels.numel() * 8) / 2**20
    index_mb = n_bank * dim * 4 / 2**20  # IndexFlatIP stores the normalised bank once
    chunk = max(1, min(SOLO_LEARN_MAX_MATRIX // n_bank, n_query))
    torch_peak_mb = (chunk * n_bank * 4 + chunk * k * num_classes * 4 * 2) / 2**20
    faiss_scratch_mb = n_query * k * (4 + 8) / 2**20  # results; faiss tiles its own blocks

    rows = [
        (f"torch chunked brute force (solo-learn, {chunk} queries/chunk)", t_torch, 1.0),
        (
            f"torch brute force, large chunks ({LARGE_MAX_MATRIX // n_bank} queries)",
            t_large,
            t_torch / t_large,
        ),
        ("faiss IndexFlatIP, exact (OnlineKNN default)", t_faiss, t_torch / t_faiss),
        (f'faiss "{ivf}" nprobe=16, approximate', t_ivf, t_torch / t_ivf),
    ]
    print(
        f"kNN: bank {n_bank} x {dim}, {n_query} queries, k={k}, {num_classes} classes, "
        f"{torch.get_num_threads()} threads, faiss {faiss.__version__}"
    )
    print(
        f"{'method (index built + searched, per validation epoch)':60s} "
        f"{'median s':>9s} {'speed-up':>9s}"
    )
    for name, t, s in rows:
        print(f"{name:60s} {t:9.3f} {s:8.2f}x")
    print(
        f"exact faiss predictions identical to torch ({n_query}/{n_query}); approximate "
        f"agrees on {agreement:.2%}; kNN top-1 on this toy data {accuracy:.3f}"
    )
    print(
        f"bank memory: embeddings+labels {bank_mb:.1f} MiB (queue), faiss index copy "
        f"{index_mb:.1f} MiB (built per validation epoch, freed after); torch baseline "
        f"temporaries {torch_peak_mb:.1f} MiB per chunk of {chunk}, faiss results "
        f"{faiss_scratch_mb:.1f} MiB"
    )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "knn",
                "quick": args.quick,
                "bank": [n_bank, dim],
                "queries": n_query,
                "k": k,
                "num_classes": num_classes,
                "threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "torch_bruteforce_s": t_torch,
                "faiss_s": t_faiss,
                "speedup": t_torch / t_faiss,
                "torch_large_chunks_s": t_large,
                "speedup_vs_large_chunks": t_large / t_faiss,
                "baseline_queries_per_chunk": chunk,
                "faiss_ivf_s": t_ivf,
                "ivf_index": ivf,
                "ivf_speedup": t_torch / t_ivf,
                "ivf_prediction_agreement": agreement,
                "knn_top1_toy": accuracy,
                "prediction_mismatches": mismatches,
                "bank_memory_mib": bank_mb,
                "faiss_index_mib": index_mb,
                "torch_chunk_temporaries_mib": torch_peak_mb,
                "platform": platform.platform(),
                "torch": torch.__version__,
                "faiss": faiss.__version__,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
