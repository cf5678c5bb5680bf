"""A short ``ssl-train`` run of each method beyond the seed learns on the embedded data: its
training loss falls, and its backbone's frozen features beat the same architecture at random
initialisation (``ssl-eval`` on 4000 train / 1000 test images).

The backbones are shrunk so that a run of a few hundred steps shows a clear gain: a small ResNet
of widths 8-16 (16 features, so a random initialisation keeps little of the image) or 16-32 for
DINO, whose head needs a wider input, and a 2-block, 64-wide ViT. The joint-embedding methods are
scored with kNN-20, MAE, I-JEPA and iBOT with the linear probe (their features need a probe:
MAE's kNN-20 trails its linear score, as in the paper). Measured gains: docs/methods/index.md.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from ssl_train import compose, run
from ssl_train.evaluation import evaluate


def small_resnet(widths: str) -> list[str]:
    return ["backbone=small_resnet", f"backbone.widths=[{widths}]", "data.train.batch_size=64"]


def small_vit(batch_size: int) -> list[str]:
    size = ["+backbone.depth=2", "+backbone.embed_dim=64", "+backbone.num_heads=2"]
    return [*size, f"data.train.batch_size={batch_size}"]


SMALL_RESNET = small_resnet("8,16")
SMALL_VIT = small_vit(32)
COMMON = [
    "data.train.limit=4000",
    "data.val.limit=64",
    "trainer.max_epochs=1000",
    "trainer.check_val_every_n_epoch=1000",
    "trainer.log_every_n_steps=1",
    "progress_bar=none",
    "summary=false",
    "plots=false",
]


@dataclass(frozen=True)
class Case:
    steps: int
    overrides: list[str]
    metric: str = "knn20_top1"
    min_gain: float = 0.05
    loss_key: str = "train/loss"


CASES = {
    "simsiam": Case(200, SMALL_RESNET),
    "swav": Case(200, SMALL_RESNET),
    # a 200-step run needs a faster key encoder than the 10-minute preset's 0.99
    "mocov3": Case(
        200,
        [*SMALL_RESNET, "module.hparams.ema=0.9", "module.hparams.mlp_dim=256"],
    ),
    "dino": Case(200, small_resnet("16,32"), min_gain=0.02),
    "mae": Case(
        300,
        [
            *SMALL_VIT,
            "module.decoder.decoder_dim=32",
            "module.decoder.num_heads=2",
            "module.decoder.depth=1",
        ],
        metric="linear_top1",
    ),
    # I-JEPA's features first fall below random init, then overtake it (linear 41.5 after 400
    # steps at the preset's settings, against 45.7); one predictor block makes 1000 steps cheap
    # enough, and twice the preset's lr gains the most in them (seeds 0 and 1: +8.0 and +5.3)
    "ijepa": Case(
        1000,
        [*small_vit(64), "module.predictor.depth=1", "module.optim.optimizer.lr=2.0e-3"],
        metric="linear_top1",
        min_gain=0.02,
    ),
    # iBOT's CLS term is DINO's, which rises while the centre settles; its patch term falls
    "ibot": Case(
        300,
        [*SMALL_VIT, "module.hparams.out_dim=256", "module.projector.student.hidden=128"],
        metric="linear_top1",
        min_gain=0.02,
        loss_key="train/loss_patch",
    ),
}


def step_losses(metrics_csv: Path, key: str) -> list[float]:
    with open(metrics_csv, newline="") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key)]


def features_score(run_dir: Path, backbone: str, metric: str) -> float:
    result = evaluate(
        run_dir,
        backbone=backbone,
        ks=(20,),
        linear=metric.startswith("linear"),
        train_limit=4000,
        test_limit=1000,
        progress=False,
    )
    return result["metrics"][metric]


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(CASES))
def test_short_run_lowers_the_loss_and_beats_random_init(method: str, tmp_path: Path) -> None:
    case = CASES[method]
    overrides = [f"method={method}", f"trainer.max_steps={case.steps}", *COMMON]
    result = run(compose([*overrides, *case.overrides]), run_dir=tmp_path)
    assert result is not None
    losses = step_losses(result.paths["metrics_csv"], case.loss_key)
    assert len(losses) == case.steps
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < first, (method, first, last)
    trained = features_score(tmp_path, "trained", case.metric)
    random_init = features_score(tmp_path, "random", case.metric)
    assert trained > random_init + case.min_gain, (method, case.metric, trained, random_init)
