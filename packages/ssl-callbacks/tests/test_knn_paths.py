"""The faiss and torch search paths find the same neighbours; the bank copy follows the queue."""

import pytest
import torch
import torch.nn.functional as F

from ssl_callbacks import OnlineKNN, torch_knn
from ssl_callbacks._screen import Screen, screened_topk
from ssl_callbacks.neighbours import faiss_knn, fast_bf16, resolve_backend


def _bank(n=600, dim=32, classes=5, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return centers[labels] + spread * torch.randn(n, dim, generator=g), labels


def _reference(rows, queries, k, distance):
    """float64 dense similarity and topk, the definition."""
    if distance == "cosine":
        sim = F.normalize(queries.double(), dim=1) @ F.normalize(rows.double(), dim=1).T
        return sim.topk(k, dim=1)
    dist = torch.cdist(queries.double(), rows.double())
    return dist.topk(k, dim=1, largest=False)


def _same_neighbours(ids, ref_ids, scores, ref_scores):
    torch.testing.assert_close(scores.double(), ref_scores, rtol=0, atol=2e-5)
    # Sets of neighbours agree except where two candidates tie within float32 precision.
    for row, (a, b) in enumerate(zip(ids.tolist(), ref_ids.tolist(), strict=True)):
        if set(a) != set(b):
            kth = ref_scores[row, -1]
            assert (ref_scores[row] - kth).abs().min() < 2e-5, f"row {row}: {a} vs {b}"


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("screen", [False, True])
def test_torch_and_faiss_paths_match_the_definition(distance, screen):
    if screen and distance == "euclidean":
        pytest.skip("screening is for cosine only")
    rows, _ = _bank()
    queries, _ = _bank(n=70, seed=1)
    prepared = F.normalize(rows, dim=1) if distance == "cosine" else rows
    ref_scores, ref_ids = _reference(rows, queries, 10, distance)
    bf16 = Screen.of(prepared) if screen else None
    for scores, ids in (
        torch_knn(prepared, queries, 10, distance, screen=bf16, max_matrix=600 * 16),
        faiss_knn(prepared, queries, 10, distance),
    ):
        _same_neighbours(ids, ref_ids, scores, ref_scores)


def test_screen_falls_back_to_float32_when_the_bound_is_not_met():
    # 200 near-copies of one row: bf16 cannot order them, so every query is redone exactly.
    g = torch.Generator().manual_seed(2)
    base = torch.randn(1, 16, generator=g)
    rows = F.normalize(base + 1e-3 * torch.randn(200, 16, generator=g), dim=1)
    queries = base + 1e-3 * torch.randn(8, 16, generator=g)
    stats = {}
    scores, ids = torch_knn(rows, queries, 5, "cosine", screen=Screen.of(rows), stats=stats)
    assert stats == {"screened": 8, "redone": 8}
    ref_scores, ref_ids = _reference(rows, queries, 5, "cosine")
    _same_neighbours(ids, ref_ids, scores, ref_scores)


def test_screen_proves_separated_queries_and_redoes_planted_near_ties():
    # Clustered rows (the proof settles them) plus, for half the queries, 40 rows planted just
    # above or below its 5th neighbour (within the bf16 error): those must be redone, and every
    # answer must still be the float64 top 5.
    rows, _ = _bank(n=2000, dim=64, classes=10, spread=1.0, seed=3)
    queries, _ = _bank(n=32, dim=64, classes=10, spread=1.0, seed=4)
    rows, queries = F.normalize(rows, dim=1), F.normalize(queries, dim=1)
    stats = {}
    torch_knn(rows, queries, 5, "cosine", screen=Screen.of(rows), stats=stats)
    assert stats["screened"] == 32 and stats["redone"] <= 4  # the bound is not vacuous
    kth = (queries.double() @ rows.double().T).topk(5, dim=1).values[:, -1]
    g = torch.Generator().manual_seed(5)
    for j in range(4):
        q = queries[j].double()
        noise = torch.randn(40, 64, generator=g, dtype=torch.float64)
        noise = F.normalize(noise - (noise @ q)[:, None] * q, dim=1)  # orthogonal to q
        target = kth[j] + torch.linspace(-2e-3, 2e-3, 40, dtype=torch.float64)
        planted = target[:, None] * q + (1 - target[:, None] ** 2).sqrt() * noise
        bank = torch.cat([rows, planted.float()])
        stats = {}
        scores, ids = torch_knn(bank, queries, 5, "cosine", screen=Screen.of(bank), stats=stats)
        _, _, proven = screened_topk(bank, Screen.of(bank), queries[j : j + 1], 5, 21)
        assert stats["redone"] >= 1 and not proven.item()
        ref_scores, ref_ids = _reference(bank, queries, 5, "cosine")
        _same_neighbours(ids, ref_ids, scores, ref_scores)


def test_screen_error_bound_holds_for_every_pair():
    # The proof's premise: each bf16 screen value lies within the bound of the exact similarity.
    # Components at bf16 rounding midpoints (x.5 ulp) make the rounding errors as large as can be.
    g = torch.Generator().manual_seed(6)
    rows = F.normalize(torch.randn(300, 256, generator=g), dim=1)
    mid = rows.bfloat16().float() * (1 + 2.0**-9)
    rows = torch.cat([rows, F.normalize(mid, dim=1)])
    queries = torch.cat([F.normalize(torch.randn(20, 256, generator=g), dim=1), rows[300:320]])
    screen = Screen.of(rows)
    exact = queries.double() @ rows.double().T
    rough = (queries.bfloat16() @ screen.rows.T).double()
    q_res = (queries.double() - queries.bfloat16().double()).norm(dim=1, keepdim=True)
    bound = screen.residual + q_res * screen.norm + 256 * 2.0**-24 + 2.0**-8 * rough.abs() * 1.01
    assert ((rough - exact).abs() <= bound).all()
    # ... and an eighth of it would not hold: it is not loose by orders of magnitude.
    assert ((rough - exact).abs() > bound / 8).any()
    _, _, proven = screened_topk(rows, screen, queries, 5, 20)
    assert proven.dtype == torch.bool and proven.shape == (40,)


def test_backend_choice():
    cpu = torch.device("cpu")
    assert resolve_backend("faiss", cpu) == "faiss-cpu"
    assert resolve_backend("torch", cpu) == "torch"
    assert resolve_backend("auto", cpu, index="HNSW32") == "faiss-cpu"
    assert resolve_backend("auto", cpu) == ("torch" if fast_bf16(cpu) else "faiss-cpu")
    assert resolve_backend("auto", cpu, distance="euclidean") == "faiss-cpu"
    with pytest.raises(ValueError, match=r'index=.HNSW32. needs backend="faiss"'):
        resolve_backend("torch", cpu, index="HNSW32")
    with pytest.raises(ValueError, match="backend must be one of"):
        OnlineKNN("knn", "embedding", "label", 10, k=3, backend="gpu")


def _fit(toy, tmp_path, backend, epochs=2):
    xt, yt = _bank(n=90, dim=6, classes=4, spread=1.0)
    xv, yv = _bank(n=30, dim=6, classes=4, spread=1.0, seed=3)
    knn = OnlineKNN("knn", "embedding", "label", queue_length=40, k=5, num_classes=4)
    knn.backend = backend
    trainer = toy.trainer(tmp_path, [knn], max_epochs=epochs)
    trainer.fit(toy.Module(dim=6, identity=True), toy.loader(xt, yt), toy.loader(xv, yv))
    return knn, trainer, (xt, yt, xv, yv)


def test_callback_paths_log_the_same_accuracy(toy, tmp_path):
    results = {}
    for backend in ("faiss", "torch"):
        knn, trainer, (xt, yt, xv, yv) = _fit(toy, tmp_path / backend, backend)
        assert knn.path == ("faiss-cpu" if backend == "faiss" else "torch")
        results[backend] = float(trainer.callback_metrics["val/knn_top1"])
    _, ids = _reference(xt[-40:], xv, 5, "cosine")
    sim = F.normalize(xv.double(), dim=1) @ F.normalize(xt[-40:].double(), dim=1).T
    votes = torch.zeros(30, 4, dtype=torch.float64)
    votes.scatter_add_(1, yt[-40:][ids], torch.exp(sim.gather(1, ids) / 0.07))
    expected = float((votes.argmax(1) == yv).double().mean())
    assert results["faiss"] == pytest.approx(expected)
    assert results["torch"] == pytest.approx(expected)


def test_bank_copy_follows_the_queue(toy, tmp_path):
    knn, _, (xt, yt, _, _) = _fit(toy, tmp_path, "torch", epochs=1)
    assert knn._mirror.rows_prepared == 40  # first validation: the whole bank
    # Two more batches of 8 rows: only those are prepared, written over the oldest.
    for start in (0, 8):
        rows = xt[start : start + 8]
        knn._buffer("embedding").push(rows)
        knn._buffer("label").push(yt[start : start + 8])
    knn._prepare(torch.device("cpu"))
    assert knn._mirror.rows_prepared == 16
    feats, labels = knn.bank()
    pairs = zip(knn._mirror.rows.tolist(), knn._mirror.labels.tolist(), strict=True)
    mirror = {tuple(r): c for r, c in pairs}
    pairs = zip(F.normalize(feats, dim=1).tolist(), labels.tolist(), strict=True)
    expected = {tuple(r): c for r, c in pairs}
    assert mirror.keys() == expected.keys()
    assert mirror == expected
