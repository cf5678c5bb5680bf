import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from ssl_callbacks import MissingKeyError, OnlineKNN, build_index, search, weighted_vote


def brute_force_votes(bank, bank_labels, queries, k, num_classes, distance, temperature):
    """Independent reference: dense similarity matrix, topk, weighted one-hot votes."""
    if distance == "cosine":
        sim = F.normalize(queries.double(), dim=1) @ F.normalize(bank.double(), dim=1).T
        top, idx = sim.topk(k, dim=1)
        weights = torch.exp(top / temperature)
    else:
        dist = torch.cdist(queries.double(), bank.double())
        top, idx = dist.topk(k, dim=1, largest=False)
        weights = 1.0 / top
    one_hot = F.one_hot(bank_labels[idx], num_classes).double()  # [B, k, C]
    votes = (one_hot * weights[..., None]).sum(1)
    return votes / votes.sum(1, keepdim=True)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_faiss_votes_equal_brute_force(distance):
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(500, 16, generator=g)
    labels = torch.randint(0, 7, (500,), generator=g)
    queries = torch.randn(64, 16, generator=g)
    index = build_index(bank, distance)
    scores, ids = search(index, queries, 10, distance)
    votes = weighted_vote(scores, labels[ids], 7, distance, temperature=0.1)
    ref = brute_force_votes(bank, labels, queries, 10, 7, distance, 0.1)
    assert torch.equal(votes.argmax(1), ref.argmax(1))
    torch.testing.assert_close(votes.double(), ref, rtol=1e-4, atol=1e-5)


def test_approximate_index_agrees_with_exact():
    g = torch.Generator().manual_seed(1)
    bank = torch.randn(2000, 16, generator=g)
    queries = torch.randn(100, 16, generator=g)
    _, exact = search(build_index(bank), queries, 5)
    _, approx = search(build_index(bank, index="HNSW32", index_params="efSearch=64"), queries, 5)
    pairs = zip(exact.tolist(), approx.tolist(), strict=True)
    overlap = sum(len(set(a) & set(b)) for a, b in pairs)
    assert overlap / exact.numel() > 0.9


def test_bad_index_description():
    with pytest.raises(ValueError, match="index_factory string"):
        build_index(torch.randn(10, 4), index="NotAnIndex")


def _data(n, dim, seed, classes=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_callback_logs_reference_accuracy(toy, tmp_path, distance):
    xt, yt = _data(48, 6, seed=0)
    xv, yv = _data(20, 6, seed=1)
    knn = OnlineKNN(
        "knn",
        "embedding",
        "label",
        queue_length=32,
        k=5,
        distance=distance,
        temperature=0.5,
        num_classes=4,
    )
    trainer = toy.trainer(tmp_path, [knn])
    module = toy.Module(dim=6, identity=True)  # embedding == x, so the bank is known
    trainer.fit(module, toy.loader(xt, yt), toy.loader(xv, yv, batch_size=7))
    ref = brute_force_votes(xt[-32:], yt[-32:], xv, 5, 4, distance, 0.5)
    top1 = MulticlassAccuracy(4, top_k=1, average="micro")(ref.float(), yv)
    top3 = (ref.topk(4, dim=1).indices == yv[:, None]).any(1).float().mean()  # top-5 of 4 = all
    assert float(trainer.callback_metrics["val/knn_top1"]) == pytest.approx(float(top1))
    assert float(trainer.callback_metrics["val/knn_top5"]) == pytest.approx(float(top3))


def test_empty_bank_at_first_validation_raises(toy, tmp_path):
    xv, yv = _data(8, 6, seed=1)
    knn = OnlineKNN("knn", "embedding", "label", queue_length=16, k=3, num_classes=4)
    trainer = toy.trainer(tmp_path, [knn])
    with pytest.raises(RuntimeError, match=r"OnlineKNN\('knn'\): the bank is empty.*ckpt_path="):
        trainer.validate(toy.Module(dim=6), toy.loader(xv, yv))


def test_empty_bank_is_quiet_in_the_sanity_check(toy, tmp_path):
    xt, yt = _data(16, 6, seed=0)
    knn = OnlineKNN("knn", "embedding", "label", queue_length=16, k=3, num_classes=4)
    trainer = toy.trainer(tmp_path, [knn], num_sanity_val_steps=1)
    trainer.fit(toy.Module(dim=6), toy.loader(xt, yt), toy.loader(xt, yt))
    assert "val/knn_top1" in trainer.callback_metrics


def test_small_bank_warns_and_uses_all_rows(toy, tmp_path):
    xt, yt = _data(3, 6, seed=0)
    knn = OnlineKNN("knn", "embedding", "label", queue_length=16, k=5, num_classes=4)
    trainer = toy.trainer(tmp_path, [knn])
    with pytest.warns(UserWarning, match="3 rows < k=5"):
        trainer.fit(toy.Module(dim=6, identity=True), toy.loader(xt, yt), toy.loader(xt, yt))
    assert float(trainer.callback_metrics["val/knn_top1"]) == 1.0  # queries are the bank


def test_bad_arguments():
    with pytest.raises(ValueError, match="k=30 is larger than the bank"):
        OnlineKNN("knn", "embedding", "label", queue_length=10, k=30)
    with pytest.raises(ValueError, match="distance must be one of"):
        OnlineKNN("knn", "embedding", "label", queue_length=10, k=3, distance="manhattan")
    with pytest.raises(ValueError, match="temperature"):
        OnlineKNN("knn", "embedding", "label", queue_length=10, k=3, temperature=0)


def test_float_labels_rejected(toy, tmp_path):
    xt, _ = _data(8, 6, seed=0)
    yt = torch.rand(8)
    trainer = toy.trainer(tmp_path, [OnlineKNN("knn", "embedding", "label", 8, k=2)])
    with pytest.raises(TypeError, match=r"integer tensor of class indices, got torch.float32"):
        trainer.fit(toy.Module(dim=6), toy.loader(xt, yt))


def test_label_beyond_num_classes_rejected(toy, tmp_path):
    xt, yt = _data(8, 6, seed=0, classes=4)
    yt[0] = 9
    knn = OnlineKNN("knn", "embedding", "label", 8, k=2, num_classes=4)
    trainer = toy.trainer(tmp_path, [knn])
    with pytest.raises(ValueError, match=r"got label 9 but num_classes=4.*num_classes=10"):
        trainer.fit(toy.Module(dim=6), toy.loader(xt, yt), toy.loader(xt, yt))


def test_missing_target_key(toy, tmp_path):
    xt, yt = _data(8, 6, seed=0)
    trainer = toy.trainer(tmp_path, [OnlineKNN("knn", "embedding", "target", 8, k=2)])
    with pytest.raises(MissingKeyError, match=r"'target' is in neither"):
        trainer.fit(toy.Module(dim=6), toy.loader(xt, yt))


def test_validation_dim_differs_from_bank(toy, tmp_path):
    xt, yt = _data(16, 6, seed=0)
    knn = OnlineKNN("knn", "x", "label", 16, k=2, num_classes=4)

    class Other(toy.Module):
        def validation_step(self, batch, batch_idx):
            return {"x": batch["x"][:, :4], "label": batch["label"]}

    trainer = toy.trainer(tmp_path, [knn])
    with pytest.raises(ValueError, match=r"OnlineKNN\('knn'\).*dim 4 but the bank holds dim 6"):
        trainer.fit(Other(dim=6), toy.loader(xt, yt), toy.loader(xt, yt))


@pytest.mark.parametrize("where", ["train", "val"])
def test_nan_embeddings_raise_naming_the_callback(toy, tmp_path, where):
    xt, yt = _data(16, 6, seed=0)
    xv, yv = _data(8, 6, seed=1)
    (xt if where == "train" else xv)[2, 1] = float("nan")
    knn = OnlineKNN("knn", "embedding", "label", 16, k=2, num_classes=4)
    trainer = toy.trainer(tmp_path, [knn])
    match = "the bank of training 'embedding'" if where == "train" else "validation embeddings"
    with pytest.raises(ValueError, match=rf"OnlineKNN\('knn'\).*{match}.*NaN"):
        trainer.fit(toy.Module(dim=6, identity=True), toy.loader(xt, yt), toy.loader(xv, yv))


def test_validation_label_beyond_num_classes(toy, tmp_path):
    xt, yt = _data(16, 6, seed=0)
    xv, yv = _data(8, 6, seed=1)
    yv[3] = 6
    knn = OnlineKNN("knn", "embedding", "label", 16, k=2, num_classes=4)
    trainer = toy.trainer(tmp_path, [knn])
    with pytest.raises(ValueError, match=r"OnlineKNN\('knn'\): got label 6 but num_classes=4"):
        trainer.fit(toy.Module(dim=6, identity=True), toy.loader(xt, yt), toy.loader(xv, yv))
