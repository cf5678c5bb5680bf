"""Module batch transforms (per stage, checkpointed) and checkpoint round trips."""

import pytest
import torch
from torch import nn

from ssl_core import Module

# ----------------------------------------------------------------------------- batch transforms


class NoisyTransform:
    """A stateful batch transform (generator state), like ssl_data's augmentation."""

    def __init__(self, seed=0):
        self.generator = torch.Generator().manual_seed(seed)
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        batch = dict(batch)
        batch["image"] = batch["image"] + torch.randn(
            batch["image"].shape, generator=self.generator
        )
        batch["transformed"] = True
        return batch

    def state_dict(self):
        return {"generator": self.generator.get_state(), "calls": self.calls}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])
        self.calls = state["calls"]


def test_batch_transform_callable_applies_to_train_only(kit):
    seen = []

    def fwd(self, batch, stage):
        seen.append((stage, batch.get("transformed", False)))
        return kit.regression_forward(self, batch, stage)

    m = kit.module(forward=fwd, batch_transforms=NoisyTransform())
    kit.trainer(max_steps=-1, max_epochs=1, limit_train_batches=1, limit_val_batches=1).fit(
        m, kit.loader(), kit.loader()
    )
    assert ("train", True) in seen and ("val", False) in seen
    assert ("train", False) not in seen


def test_batch_transform_dict_per_stage(kit):
    val_t = NoisyTransform()
    seen = []

    def fwd(self, batch, stage):
        seen.append((stage, batch.get("transformed", False)))
        return kit.regression_forward(self, batch, stage)

    m = kit.module(forward=fwd, batch_transforms={"val": val_t})
    kit.trainer(max_steps=-1, max_epochs=1, limit_train_batches=1, limit_val_batches=1).fit(
        m, kit.loader(), kit.loader()
    )
    assert ("train", False) in seen and ("val", True) in seen


def test_batch_transform_rejects_unknown_stage(kit):
    with pytest.raises(ValueError, match="unknown stages \\['training'\\]"):
        kit.module(batch_transforms={"training": NoisyTransform()})


def test_batch_transform_state_survives_checkpoint(kit, tmp_path):
    ref_t = NoisyTransform(seed=1)
    m = kit.module(batch_transforms=ref_t)
    t = kit.trainer(max_steps=2, enable_checkpointing=True, default_root_dir=tmp_path)
    t.fit(m, kit.loader())
    path = tmp_path / "mid.ckpt"
    t.save_checkpoint(path)
    expected_next = torch.randn(3, generator=ref_t.generator)

    resumed_t = NoisyTransform(seed=99)
    m2 = kit.module(batch_transforms=resumed_t)
    kit.trainer(max_steps=2).validate(m2, kit.loader(n=4), ckpt_path=path, verbose=False)
    assert resumed_t.calls == 2
    torch.testing.assert_close(torch.randn(3, generator=resumed_t.generator), expected_next)


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(kit, tmp_path):
    optim = {
        "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
        "scheduler": {"type": "CosineAnnealingLR", "T_max": 10},
    }
    m = kit.module(hparams={"lr": 0.01, "note": "x"}, optim=optim)
    t = kit.trainer(max_steps=3, enable_checkpointing=True, default_root_dir=tmp_path)
    t.fit(m, kit.loader(n=4))  # one batch per epoch: every step sees the same batch
    path = tmp_path / "final.ckpt"
    t.save_checkpoint(path)

    loaded = Module.load_from_checkpoint(
        path, forward=kit.regression_forward, backbone=nn.Linear(6, 4), head=nn.Linear(4, 3)
    )
    assert loaded.hparams.lr == 0.01 and loaded.hparams.note == "x"
    for key, value in m.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    batch = {"image": torch.randn(3, 6), "label": torch.zeros(3, dtype=torch.long)}
    torch.testing.assert_close(loaded(batch, "val")["logits"], m(batch, "val")["logits"])

    # resuming restores optimiser (momentum) and scheduler state and continues counting steps:
    # 3 steps + resume to 5 equals 5 uninterrupted steps (Lightning's resume may re-enumerate
    # batches, hence a single-batch epoch)
    m2 = kit.module(optim=optim)
    t2 = kit.trainer(max_steps=5)
    t2.fit(m2, kit.loader(n=4), ckpt_path=path)
    assert t2.global_step == 5
    m3 = kit.module(optim=optim)
    kit.trainer(max_steps=5).fit(m3, kit.loader(n=4))
    torch.testing.assert_close(m2.backbone.weight, m3.backbone.weight)
    assert t2.lr_scheduler_configs[0].scheduler.last_epoch == 5
