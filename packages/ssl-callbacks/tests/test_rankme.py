import math

import pytest
import torch

from ssl_callbacks import RankMe, rankme


def test_rankme_matches_formula():
    # Singular values 3, 1, 0: p = (0.75, 0.25, 0) + eps.
    emb = torch.zeros(5, 3)
    emb[0, 0], emb[1, 1] = 3.0, 1.0
    eps = 1e-7
    p = torch.tensor([0.75, 0.25, 0.0], dtype=torch.float64) + eps
    expected = math.exp(-float((p * p.log()).sum()))
    assert float(rankme(emb)) == pytest.approx(expected, rel=1e-6)


def test_rankme_extremes():
    g = torch.Generator().manual_seed(0)
    assert float(rankme(torch.eye(16))) == pytest.approx(16.0, rel=1e-4)
    collapsed = torch.randn(64, 1, generator=g) @ torch.randn(1, 16, generator=g)
    assert float(rankme(collapsed)) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match=r"non-empty \[n, D\]"):
        rankme(torch.zeros(0, 4))


def test_rankme_callback_logs_rank_of_queue(toy, tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g)
    y = torch.zeros(40, dtype=torch.long)
    monitor = RankMe("rankme", input="embedding", queue_length=24)
    trainer = toy.trainer(tmp_path, [monitor])
    trainer.fit(toy.Module(dim=6, identity=True), toy.loader(x, y), toy.loader(x[:8], y[:8]))
    assert float(trainer.callback_metrics["val/rankme"]) == pytest.approx(float(rankme(x[-24:])))


def test_rankme_rejects_non_matrix_embeddings(toy, tmp_path):
    class Pooled(toy.Module):
        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            return {**out, "embedding": out["embedding"][:, None]}

    x, y = torch.randn(8, 6), torch.zeros(8, dtype=torch.long)
    trainer = toy.trainer(tmp_path, [RankMe("rankme", "embedding", 8)])
    with pytest.raises(ValueError, match=r"must be \[B, D\], got \[8, 1, 6\]"):
        trainer.fit(Pooled(dim=6), toy.loader(x, y))
