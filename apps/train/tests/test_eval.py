"""Offline evaluation (``ssl-eval``): kNN against a brute-force reference, the linear probe,
loading a backbone from a run directory / checkpoint / backbone.pt, baselines, CLI and errors."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import ssl_data
from ssl_train import compose, evaluate, run
from ssl_train.evaluation import (
    EvaluationError,
    ProbeSettings,
    extract_features,
    knn_accuracy,
    knn_scores,
    linear_probe,
    load_backbone,
)
from ssl_train.evaluation.cli import main, parse_args

MEAN, STD = [0.2860], [0.3530]  # the app's Fashion-MNIST statistics
SMALL = {"train_limit": 300, "test_limit": 100, "progress": False, "device": "cpu"}


# A two-step run on 32 embedded images, without callbacks, validation, plots or the summary.
TWO_STEP_RUN = [
    "callbacks=none",
    "trainer.max_steps=2",
    "trainer.limit_val_batches=0",
    "data.train.limit=32",
    "data.train.batch_size=16",
    "progress_bar=none",
    "summary=false",
    "plots=false",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-step SimCLR run on 32 embedded images: config.yaml, backbone.pt, last.ckpt."""
    out = tmp_path_factory.mktemp("run")
    result = run(compose(TWO_STEP_RUN), run_dir=out)
    assert result is not None and result.metrics["train/loss"] == result.metrics["train/loss"]
    return out


@pytest.fixture(scope="module")
def embedded() -> tuple[ssl_data.TensorImageDataset, ssl_data.TensorImageDataset]:
    return (
        ssl_data.get_dataset("fashion_mnist_embedded", "train"),
        ssl_data.get_dataset("fashion_mnist_embedded", "test"),
    )


def _bruteforce_votes(bank, bank_y, queries, k, num_classes, temperature):
    """exp(cos / T)-weighted votes of the k most similar bank rows, written out in torch."""
    sims = F.normalize(queries.double(), dim=1) @ F.normalize(bank.double(), dim=1).T
    top, ids = sims.topk(k, dim=1)
    votes = torch.zeros(queries.shape[0], num_classes, dtype=torch.float64)
    votes.scatter_add_(1, bank_y[ids], torch.exp(top / temperature))
    return votes


def test_knn_votes_match_a_bruteforce_reference() -> None:
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(500, 32, generator=g), torch.randn(80, 32, generator=g)
    bank_y = torch.randint(0, 7, (500,), generator=g)
    test_y = torch.randint(0, 7, (80,), generator=g)
    shares = knn_scores(bank, bank_y, queries, 7, ks=(5, 20, 200), temperature=0.1)
    for k in (5, 20, 200):
        ref = _bruteforce_votes(bank, bank_y, queries, k, 7, 0.1)
        torch.testing.assert_close(
            shares[k].double(), ref / ref.sum(1, keepdim=True), atol=1e-5, rtol=1e-4
        )
    acc = knn_accuracy(bank, bank_y, queries, test_y, 7, ks=(20,), temperature=0.1)[20]
    ref = _bruteforce_votes(bank, bank_y, queries, 20, 7, 0.1)
    assert acc["top1"] == pytest.approx((ref.argmax(1) == test_y).double().mean().item())
    top5 = (ref.topk(5, dim=1).indices == test_y[:, None]).any(1).double().mean().item()
    assert acc["top5"] == pytest.approx(top5)


def test_evaluate_knn_equals_bruteforce_on_the_cached_features(run_dir: Path, embedded) -> None:
    result = evaluate(run_dir, ks=(10, 20, 200), linear=False, **SMALL)
    net, _ = load_backbone(run_dir)
    kw = {"image_size": 28, "mean": MEAN, "std": STD, "progress": False}
    bank, bank_y = extract_features(net, embedded[0], limit=300, **kw)
    queries, test_y = extract_features(net, embedded[1], limit=100, **kw)
    assert result["n_train"] == 300 and result["n_test"] == 100 and result["feature_dim"] == 256
    for k in (10, 20, 200):
        ref = _bruteforce_votes(bank, bank_y, queries, k, 10, 0.07)
        expected = (ref.argmax(1) == test_y).double().mean().item()
        assert result["metrics"][f"knn{k}_top1"] == pytest.approx(expected, abs=1e-6)
    assert result["linear"] is None and "linear_top1" not in result["metrics"]


def test_probe_separates_a_linearly_separable_toy_set() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (1200,), generator=g)
    means = torch.zeros(4, 16)
    means[:, :4] = 6 * torch.eye(4)  # classes 6 sigma apart: separable with a wide margin
    x = (means[y] + torch.randn(1200, 16, generator=g)) * 3 + 5  # standardisation matters
    train, test = slice(0, 600), slice(600, None)
    acc = linear_probe(x[train], y[train], x[test], y[test], 4, ProbeSettings(epochs=5))
    assert acc["top1"] >= 0.99 and acc["train_top1"] >= 0.99
    assert acc["top5"] == 1.0  # top-min(5, C) of 4 classes
    assert acc["epochs"] == 334  # min_steps=1000 at 3 steps (600 rows / 256) per epoch
    # random labels cannot be predicted on held-out rows
    shuffled = y[torch.randperm(len(y), generator=g)]
    chance = linear_probe(x[train], shuffled[train], x[test], shuffled[test], 4)
    assert chance["top1"] < 0.4


def test_run_dir_ckpt_and_backbone_file_give_identical_features(
    run_dir: Path, embedded, tmp_path: Path
) -> None:
    kw = {"image_size": 28, "mean": MEAN, "std": STD, "progress": False, "limit": 64}
    feats = {}
    for name, source in {
        "run_dir": run_dir,
        "ckpt": run_dir / "checkpoints" / "last.ckpt",
        "backbone_pt": run_dir / "backbone.pt",
    }.items():
        net, src = load_backbone(source)
        assert src.run_dir == run_dir.resolve()
        feats[name] = extract_features(net, embedded[1], **kw)[0]
    torch.testing.assert_close(feats["ckpt"], feats["run_dir"], rtol=0, atol=0)
    torch.testing.assert_close(feats["backbone_pt"], feats["run_dir"], rtol=0, atol=0)
    # the weights were loaded: a random init of the same architecture gives other features
    rand = evaluate(run_dir, backbone="random", linear=False, **SMALL)
    trained = evaluate(run_dir, linear=False, **SMALL)
    assert rand["metrics"] != trained["metrics"]
    # a backbone.pt away from its run needs config=
    lone = tmp_path / "elsewhere" / "backbone.pt"
    lone.parent.mkdir()
    shutil.copy(run_dir / "backbone.pt", lone)
    with pytest.raises(EvaluationError, match=r"config=<run dir>/config\.yaml"):
        load_backbone(lone)
    net, _ = load_backbone(lone, config=run_dir / "config.yaml")
    torch.testing.assert_close(extract_features(net, embedded[1], **kw)[0], feats["run_dir"])


def test_random_baseline_is_seeded_and_takes_a_named_architecture() -> None:
    a = evaluate(backbone="random", arch="small_resnet", linear=False, **SMALL)
    b = evaluate(backbone="random", arch="small_resnet", linear=False, **SMALL)
    c = evaluate(backbone="random", arch="small_resnet", linear=False, seed=1, **SMALL)
    assert a["metrics"] == b["metrics"] and a["metrics"] != c["metrics"]
    assert a["arch"]["_target_"] == "ssl_core.backbone.SmallResNet" and a["feature_dim"] == 256


def test_pixel_features_are_the_flattened_normalised_images(embedded) -> None:
    kw = {"image_size": 28, "mean": MEAN, "std": STD, "progress": False}
    feats, labels = extract_features(None, embedded[1], limit=50, batch_size=16, **kw)
    images = embedded[1].images[:50].double() / 255
    expected = ((images - MEAN[0]) / STD[0]).flatten(1).float()
    torch.testing.assert_close(feats, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(labels, embedded[1].labels[:50])
    result = evaluate(backbone="pixels", probe=ProbeSettings(epochs=3), **SMALL)
    assert result["feature_dim"] == 784 and result["source"] is None
    assert 0.5 < result["metrics"]["knn20_top1"] <= 1.0  # pixels classify Fashion-MNIST well


def test_cli_writes_json_and_prints_the_table(run_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "eval.json"
    args = [str(run_dir), "train_limit=300", "test_limit=100", "progress=false", "device=cpu"]
    main([*args, "k=10,20", "probe.epochs=2", f"output={out}"])
    written = json.loads(out.read_text())
    assert written["knn"].keys() == {"10", "20"} and written["probe"]["epochs"] == 2
    expected = evaluate(run_dir, ks=(10, 20), probe=ProbeSettings(epochs=2), **SMALL)
    assert written["metrics"] == pytest.approx(expected["metrics"])
    printed = capsys.readouterr().out
    assert "kNN k=20" in printed and "linear probe" in printed and str(out) in printed
    # the default output goes into the run directory
    main([*args, "k=10", "linear=false"])
    assert (run_dir / "eval-trained-fashion_mnist_embedded.json").is_file()


def test_clear_errors(tmp_path: Path, capsys) -> None:
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate(tmp_path / "missing", **SMALL)
    with pytest.raises(EvaluationError, match="is not a run directory"):
        evaluate(tmp_path, **SMALL)
    with pytest.raises(EvaluationError, match="backbone=pixels"):
        evaluate(**SMALL)
    with pytest.raises(EvaluationError, match="arch=<"):
        evaluate(backbone="random", **SMALL)
    with pytest.raises(EvaluationError, match="data='mnist' is not a data config"):
        evaluate(backbone="pixels", data="mnist", **SMALL)
    with pytest.raises(ssl_data.DatasetUnavailableError, match=r"data\.download=true"):
        evaluate(backbone="pixels", data="cifar10", overrides=[f"data.root={tmp_path}"], **SMALL)
    with pytest.raises(SystemExit, match="not found under"):
        main(["backbone=pixels", "data=cifar10", f"data.root={tmp_path}"])
    with pytest.raises(ValueError, match="Did you mean 'train_limit'"):
        parse_args(["train_limt=5"])
    with pytest.raises(ValueError, match=r"probe\.epochs"):
        parse_args(["probe.epoch=5"])
    main(["--help"])
    assert "backbone=trained|pixels|random" in capsys.readouterr().out


@pytest.mark.slow
def test_teacher_student_checkpoint_gives_the_exported_ema_teacher(tmp_path: Path) -> None:
    assert run(compose(["method=byol", *TWO_STEP_RUN]), run_dir=tmp_path) is not None
    from_ckpt, _ = load_backbone(tmp_path / "checkpoints" / "last.ckpt")
    exported, _ = load_backbone(tmp_path / "backbone.pt")
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, value in from_ckpt.state_dict().items():
        assert torch.equal(value, exported.state_dict()[name])
        assert torch.equal(value, state[f"backbone.teacher.{name}"])
    student = {k: v for k, v in state.items() if k.startswith("backbone.student.")}
    assert any(
        not torch.equal(v, state[k.replace(".student.", ".teacher.")]) for k, v in student.items()
    )  # after two steps the student has moved away from the EMA teacher
