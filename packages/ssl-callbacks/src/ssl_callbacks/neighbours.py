"""Nearest-neighbour search for the kNN monitor: faiss (CPU or GPU) and an exact torch path.

Three ways to find the ``k`` nearest bank rows of each query, with the same neighbours (exact
ties aside):

* faiss on CPU: :func:`faiss.knn` brute force on the rows, or any ``index_factory`` index
  (:func:`build_index`, e.g. ``"HNSW32"``) for approximate search;
* faiss on GPU (``faiss-gpu`` installed, the ``ssl-callbacks[gpu]`` extra): ``faiss.knn_gpu`` on
  the device tensors, no copy to the host;
* torch (:func:`torch_knn`): chunked matmul and ``topk`` on the rows' device. On CUDA and on
  CPUs with bfloat16 instructions the similarities are screened in bfloat16 and the candidates
  re-scored in float32 under a proven error bound (:mod:`ssl_callbacks._screen`), so the result
  is exact; a query whose proof fails is searched again in float32.

``benchmarks/knn.py`` measures each path against the chunked torch brute force of solo-learn.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import torch
import torch.nn.functional as F

from ssl_callbacks._screen import Screen, screened_topk

Distance = Literal["cosine", "euclidean"]
Backend = Literal["auto", "faiss", "torch"]
DISTANCES = ("cosine", "euclidean")
BACKENDS = ("auto", "faiss", "torch")


def _as_faiss_array(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())


def _faiss_threads() -> None:
    # Keep faiss's OpenMP pool the size of torch's instead of every core of the machine.
    faiss.omp_set_num_threads(max(1, torch.get_num_threads()))


def faiss_gpu_available() -> bool:
    """Whether the installed faiss has GPU support (the ``faiss-gpu`` wheels)."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def fast_bf16(device: torch.device) -> bool:
    """Whether the bfloat16 screen pays on ``device``: bfloat16 CUDA GPUs, bfloat16 x86 CPUs.

    On CPU it needs oneDNN and the AVX512-BF16 or AMX-BF16 instructions (a bfloat16 matmul at
    about twice float32's speed); elsewhere the emulated bfloat16 matmul is no faster.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_backend(
    backend: Backend, device: torch.device, index: str = "Flat", distance: Distance = "cosine"
) -> str:
    """The search path for a bank on ``device``: ``"faiss-cpu"``, ``"faiss-gpu"`` or ``"torch"``.

    ``"auto"``: approximate indexes use faiss on CPU; an exact search of a CUDA bank uses faiss's
    GPU brute force when installed, else torch on the device; an exact cosine search of a CPU
    bank uses torch's proven bfloat16 screen where the CPU has bfloat16 instructions
    (:func:`fast_bf16`; measured faster than faiss, ``benchmarks/knn.py``), else faiss.

    Raises:
        ValueError: Unknown backend, or ``"torch"`` with an approximate faiss index.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if index != "Flat":
        if backend == "torch":
            raise ValueError(
                f'backend="torch" searches exactly; index={index!r} needs backend="faiss" or '
                '"auto" (or index="Flat").'
            )
        return "faiss-cpu"
    if backend == "faiss":
        return "faiss-gpu" if device.type == "cuda" and faiss_gpu_available() else "faiss-cpu"
    if backend == "torch":
        return "torch"
    if device.type == "cuda":
        return "faiss-gpu" if faiss_gpu_available() else "torch"
    return "torch" if distance == "cosine" and fast_bf16(device) else "faiss-cpu"


def build_index(
    bank: torch.Tensor,
    distance: Distance = "cosine",
    index: str = "Flat",
    index_params: str | None = None,
) -> faiss.Index:
    """Build a faiss index over ``bank`` (``[n, dim]``).

    Args:
        bank: The reference embeddings.
        distance: ``"cosine"`` (inner product of L2-normalised vectors) or ``"euclidean"``.
        index: A faiss ``index_factory`` description; ``"Flat"`` is exact.
        index_params: Optional faiss ``ParameterSpace`` string, e.g. ``"nprobe=16"`` or
            ``"efSearch=128"``.

    Returns:
        A trained, filled faiss index (the bank is copied into it).

    Raises:
        ValueError: Unknown distance, bad index description, or too few rows to train it.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}.")
    if bank.dim() != 2 or bank.shape[0] == 0:
        raise ValueError(
            f"build_index: bank must be a non-empty [n, dim] tensor, got {list(bank.shape)}."
        )
    _faiss_threads()
    if distance == "cosine":
        bank = F.normalize(bank.float(), dim=1)
    data = _as_faiss_array(bank)
    metric = faiss.METRIC_INNER_PRODUCT if distance == "cosine" else faiss.METRIC_L2
    try:
        idx = faiss.index_factory(data.shape[1], index, metric)
    except RuntimeError as err:
        raise ValueError(
            f"faiss could not build index {index!r} for dim {data.shape[1]}: {err}. Use a faiss "
            'index_factory string such as "Flat" (exact), "HNSW32" or "IVF1024,Flat".'
        ) from err
    if not idx.is_trained:
        try:
            idx.train(data)
        except RuntimeError as err:
            raise ValueError(
                f"faiss could not train index {index!r} on {data.shape[0]} rows: {err}. Use fewer "
                'lists (e.g. "IVF64,Flat"), a longer queue, or the exact "Flat" index.'
            ) from err
    if index_params:
        faiss.ParameterSpace().set_index_parameters(idx, index_params)
    idx.add(data)
    return idx


def search(
    index: faiss.Index, queries: torch.Tensor, k: int, distance: Distance = "cosine"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the ``k`` nearest bank rows of each query from a faiss index.

    Returns:
        ``(scores, ids)``, both ``[B, k]`` on CPU: cosine similarities (``distance="cosine"``) or
        euclidean distances (not squared), and bank row ids (``-1`` where an approximate index
        found fewer than ``k``).
    """
    if distance == "cosine":
        queries = F.normalize(queries.float(), dim=1)
    scores, ids = index.search(_as_faiss_array(queries), k)
    scores_t, ids_t = torch.from_numpy(scores), torch.from_numpy(ids)
    if distance == "euclidean":
        scores_t = scores_t.clamp_min(0).sqrt()
    return scores_t, ids_t


def faiss_knn(
    rows: torch.Tensor, queries: torch.Tensor, k: int, distance: Distance, gpu_resources=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact faiss brute force of prepared ``rows`` (L2-normalised for cosine), no index copy.

    With ``gpu_resources`` (a ``faiss.StandardGpuResources``) the search runs on the GPU on the
    torch tensors; otherwise on CPU. Returns ``(scores, ids)`` on the queries' device, scores as
    in :func:`search`.
    """
    metric = faiss.METRIC_INNER_PRODUCT if distance == "cosine" else faiss.METRIC_L2
    q = F.normalize(queries.float(), dim=1) if distance == "cosine" else queries.float()
    if gpu_resources is not None:
        # faiss's own adapter lets knn_gpu take torch tensors (device pointers, no host copy).
        importlib.import_module("faiss.contrib.torch_utils")

        scores, ids = faiss.knn_gpu(
            gpu_resources, q.contiguous(), rows.contiguous(), k, metric=metric
        )
    else:
        _faiss_threads()
        s, i = faiss.knn(_as_faiss_array(q), _as_faiss_array(rows), k, metric=metric)
        scores, ids = torch.from_numpy(s), torch.from_numpy(i)
    if distance == "euclidean":
        scores = scores.clamp_min(0).sqrt()
    return scores.to(queries.device), ids.to(queries.device)


def torch_knn(
    rows: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    distance: Distance = "cosine",
    screen: Screen | None = None,
    max_matrix: int = 2**24,
    stats: dict[str, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``k`` nearest rows by chunked matmul and ``topk`` on the rows' device.

    Args:
        rows: ``[n, D]`` float32 bank, L2-normalised for cosine.
        queries: ``[B, D]`` queries.
        k: Neighbours per query (``<= n``).
        distance: ``"cosine"`` or ``"euclidean"``.
        screen: Optional :class:`~ssl_callbacks._screen.Screen` of ``rows`` (cosine only):
            similarities are screened in bfloat16, the best ``2k`` candidates re-scored in
            float32, and a query whose proof (see :mod:`ssl_callbacks._screen`) fails is
            searched again in float32.
        max_matrix: Elements of one ``[chunk, n]`` similarity block.
        stats: If given, ``"screened"`` and ``"redone"`` query counts are added to it.

    Returns:
        ``(scores, ids)`` ``[B, k]``: cosine similarities or euclidean distances, and row ids.
    """
    n = rows.shape[0]
    q_all = queries.to(rows.device).float()
    if distance == "cosine":
        q_all = F.normalize(q_all, dim=1)
    else:
        sq_rows = rows.pow(2).sum(1)
    kk = min(n, max(2 * k, k + 16))
    if distance != "cosine" or kk >= n:
        screen = None
    chunk = max(1, min(max_matrix // max(n, 1), q_all.shape[0]))
    if screen is not None:  # the re-scoring gathers [chunk, kk, D] rows: keep it in budget too
        chunk = max(1, min(chunk, max_matrix // (kk * rows.shape[1])))
    pieces = -(-q_all.shape[0] // chunk)
    chunk = -(-q_all.shape[0] // pieces)  # equal chunks: a small last one wastes the matmul
    out_s, out_i = [], []
    for start in range(0, q_all.shape[0], chunk):
        q = q_all[start : start + chunk]
        if distance == "euclidean":
            d2 = (q.pow(2).sum(1, keepdim=True) - 2 * q @ rows.T + sq_rows).clamp_min_(0)
            s, i = d2.topk(k, dim=1, largest=False)
            out_s.append(s.sqrt())
            out_i.append(i)
            continue
        if screen is None:
            s, i = (q @ rows.T).topk(k, dim=1)
            out_s.append(s)
            out_i.append(i)
            continue
        s, i, proven = screened_topk(rows, screen, q, k, kk)
        redo = (~proven).nonzero().squeeze(1)  # reads the count back: validation time only
        if stats is not None:
            stats["screened"] = stats.get("screened", 0) + q.shape[0]
            stats["redone"] = stats.get("redone", 0) + redo.numel()
        if redo.numel():
            s_full, i_full = (q[redo] @ rows.T).topk(k, dim=1)
            s, i = s.index_copy(0, redo, s_full), i.index_copy(0, redo, i_full)
        out_s.append(s)
        out_i.append(i)
    return torch.cat(out_s), torch.cat(out_i)


def weighted_vote(
    scores: torch.Tensor,
    neighbour_labels: torch.Tensor,
    num_classes: int,
    distance: Distance = "cosine",
    temperature: float = 0.07,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class scores from neighbours: ``exp(sim / T)`` weights (cosine) or ``1 / d`` (euclidean).

    Args:
        scores: ``[B, k]`` similarities or distances of the neighbours.
        neighbour_labels: ``[B, k]`` labels of the neighbours.
        num_classes: Number of classes C.
        distance: Which weighting to use.
        temperature: T of the cosine weighting.
        valid: Optional ``[B, k]`` mask of neighbours that exist.

    Returns:
        ``[B, C]`` normalised vote shares (rows sum to 1 when any neighbour is valid).
    """
    scores = scores.double()
    if distance == "cosine":
        # exp((s - max)/T) is exp(s/T) up to a per-row factor: same shares, no overflow.
        weights = torch.exp((scores - scores.max(dim=1, keepdim=True).values) / temperature)
    else:
        weights = 1.0 / (scores + 1e-8)
    if valid is not None:
        weights = weights * valid
        neighbour_labels = neighbour_labels.masked_fill(~valid, 0)
    votes = torch.zeros(scores.shape[0], num_classes, dtype=torch.float64, device=scores.device)
    votes.scatter_add_(1, neighbour_labels.long(), weights)
    return (votes / votes.sum(dim=1, keepdim=True).clamp_min(1e-300)).float()
