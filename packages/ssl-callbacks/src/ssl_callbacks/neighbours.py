"""Nearest-neighbour search for the kNN monitor: faiss (CPU or GPU) and an exact torch path.

Three ways to find the ``k`` nearest bank rows of each query, with the same neighbours (exact
ties aside):

* faiss on CPU: :func:`faiss.knn` brute force on the rows, or any ``index_factory`` index
  (:func:`build_index`, e.g. ``"HNSW32"``) for approximate search;
* faiss on GPU (``faiss-gpu`` installed, the ``ssl-callbacks[gpu]`` extra): ``faiss.knn_gpu`` on
  the device tensors, no copy to the host;
* torch (:func:`torch_knn`): chunked matmul and ``topk`` on the rows' device. On CUDA the
  similarities are screened in bfloat16 and the candidates re-scored in float32 under a proven
  error bound, so the result is exact; a query whose bound does not separate its k-th neighbour
  is searched again in float32.

``benchmarks/knn.py`` measures each path against the chunked torch brute force of solo-learn.
"""

from __future__ import annotations

import importlib
from typing import Literal

import faiss
import numpy as np
import torch
import torch.nn.functional as F

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
    """Whether the bfloat16 screen pays on ``device``: CUDA GPUs with bfloat16 only.

    On an AVX512-BF16 CPU the screen's gather and top-80 cost more than the bfloat16 matmul saves
    (``benchmarks/knn.py``: 0.5x the float32 brute force), so CPUs search in float32.
    """
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def resolve_backend(backend: Backend, device: torch.device, index: str = "Flat") -> str:
    """The search path for a bank on ``device``: ``"faiss-cpu"``, ``"faiss-gpu"`` or ``"torch"``.

    ``"auto"``: approximate indexes use faiss on CPU; an exact search of a CUDA bank uses faiss's
    GPU brute force when installed, else torch on the device; a CPU bank uses faiss (measured
    faster than torch on CPU, ``benchmarks/knn.py``).

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
    return "faiss-cpu"


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


def _screen_error(dim: int) -> float:
    """Bound on ``|bf16 similarity - exact similarity|`` for unit vectors.

    Inputs and output are rounded to bfloat16 (unit roundoff 2^-8, |s| <= 1), the sum of ``dim``
    products is accumulated in float32.
    """
    u = 2.0**-8
    return 3 * u + u * u + dim * 2.0**-23


def torch_knn(
    rows: torch.Tensor,
    queries: torch.Tensor,
    k: int,
    distance: Distance = "cosine",
    screen: torch.Tensor | None = None,
    max_matrix: int = 2**24,
    stats: dict[str, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``k`` nearest rows by chunked matmul and ``topk`` on the rows' device.

    Args:
        rows: ``[n, D]`` float32 bank, L2-normalised for cosine.
        queries: ``[B, D]`` queries.
        k: Neighbours per query (``<= n``).
        distance: ``"cosine"`` or ``"euclidean"``.
        screen: Optional bfloat16 copy of ``rows`` (cosine only): similarities are screened in
            bfloat16, the best ``4k`` candidates re-scored in float32, and a query whose bound
            (see :func:`_screen_error`) does not prove its top ``k`` is redone in float32.
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
    chunk = max(1, min(max_matrix // max(n, 1), q_all.shape[0]))
    kk = min(n, max(4 * k, k + 32))
    if screen is not None:  # the re-scoring gathers [chunk, kk, D] rows: keep it in budget too
        chunk = max(1, min(chunk, max_matrix // (kk * rows.shape[1])))
    margin = 2 * _screen_error(rows.shape[1])
    out_s, out_i = [], []
    for start in range(0, q_all.shape[0], chunk):
        q = q_all[start : start + chunk]
        if distance == "euclidean":
            d2 = (q.pow(2).sum(1, keepdim=True) - 2 * q @ rows.T + sq_rows).clamp_min_(0)
            s, i = d2.topk(k, dim=1, largest=False)
            out_s.append(s.sqrt())
            out_i.append(i)
            continue
        if screen is None or kk >= n:
            s, i = (q @ rows.T).topk(k, dim=1)
            out_s.append(s)
            out_i.append(i)
            continue
        rough = (q.to(screen.dtype) @ screen.T).topk(kk, dim=1)
        cand = rough.indices
        exact = torch.bmm(rows[cand], q.unsqueeze(2)).squeeze(2)  # [c, kk] float32
        s, pos = exact.topk(k, dim=1)
        i = cand.gather(1, pos)
        bound = rough.values.float()
        unproven = bound[:, kk - 1] >= bound[:, k - 1] - margin
        redo = unproven.nonzero().squeeze(1)  # reads the count back: validation time only
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
