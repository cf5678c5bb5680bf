"""ssl-train runs DINO, MoCo v3, SwAV and SimSiam as configured (ResNet and ViT presets) on the
embedded data, with the callbacks each method config declares."""

from pathlib import Path

import pytest
import torch

from ssl_train import compose, run

TINY = [
    "trainer.max_epochs=1",
    "data.train.limit=32",
    "data.val.limit=32",
    "data.train.batch_size=16",
    "data.val.batch_size=32",
    "callbacks.knn.queue_length=64",
    "progress_bar=none",
    "summary=false",
    "plots=false",
]
DECLARED = {
    "dino": "TeacherStudentCallback",
    "mocov3": "TeacherStudentCallback",
    "swav": "OnlineQueue",
    "dino_vit": "TeacherStudentCallback",
    "mocov3_vit": "TeacherStudentCallback",
}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dino", "mocov3", "swav", "simsiam", "dino_vit", "mocov3_vit"])
def test_method_config_trains_on_the_embedded_data(method: str, tmp_path: Path) -> None:
    overrides = [f"method={method}", *TINY]
    if method.endswith("_vit"):
        overrides += ["+backbone.depth=2"]  # the preset's ViT-Tiny, 2 of its 12 blocks: fast
    cfg = compose(overrides)
    result = run(cfg, run_dir=tmp_path)
    assert result is not None
    loss = result.metrics["train/loss"]
    assert loss == loss and abs(loss) < 1e4
    assert 0.0 <= result.metrics["val/knn_top1"] <= 1.0
    if method in DECLARED:
        targets = {str(node.get("_target_")) for node in cfg.callbacks.values() if node}
        assert f"ssl_callbacks.{DECLARED[method]}" in targets
    state = torch.load(tmp_path / "backbone.pt", weights_only=True)
    if method.endswith("_vit"):
        assert state["model.pos_embed"].shape == (1, 50, 192)  # CLS + 7x7 patches of 4 px


@pytest.mark.parametrize(
    ("overrides", "width"),
    [
        (["backbone=vit_tiny"], 192),
        (["backbone=vit_small"], 384),
        (
            ["backbone=timm", "backbone.model_name=vit_base_patch16_224", "backbone.patch_size=4"],
            768,
        ),
    ],
)
def test_vit_backbone_configs_give_the_embedding_width(overrides: list[str], width: int) -> None:
    from ssl_train.runner import fill_embedding_dim

    cfg = compose(overrides)
    fill_embedding_dim(cfg)  # builds the backbone on the meta device
    assert cfg.embedding_dim == width


def test_timm_backbone_with_patches_that_do_not_tile_the_image_says_so() -> None:
    from ssl_train.config import ConfigError
    from ssl_train.runner import fill_embedding_dim

    cfg = compose(["backbone=timm", "backbone.model_name=vit_tiny_patch16_224"])  # 16 px patches
    with pytest.raises(ConfigError, match="multiples of 16; got 28x28"):
        fill_embedding_dim(cfg)
