import math
import re
import sys
import types

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, Dataset

import ssl_core
from ssl_core import Module, NonFiniteLossError


class DictData(Dataset):
    def __init__(self, n=16, dim=6, classes=3, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i], "sample_idx": torch.tensor(i)}


def regression_forward(self, batch, stage):
    emb = self.backbone(batch["image"])
    out = {"embedding": emb, "label": batch["label"], "logits": self.head(emb)}
    if stage == "train":
        out["loss"] = nn.functional.cross_entropy(out["logits"], batch["label"])
        out["aux"] = emb.pow(2).mean()
    return out


def make_module(**kwargs):
    torch.manual_seed(0)
    kwargs.setdefault("forward", regression_forward)
    kwargs.setdefault("backbone", nn.Linear(6, 4))
    kwargs.setdefault("head", nn.Linear(4, 3))
    return Module(**kwargs)


def trainer(**kwargs):
    kwargs.setdefault("max_steps", 2)
    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_checkpointing", False)
    return L.Trainer(
        accelerator="cpu",
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def loader(n=16, batch_size=4, **kwargs):
    return DataLoader(DictData(n, **kwargs), batch_size=batch_size)


# ----------------------------------------------------------------------------- construction


def test_kwargs_become_attributes_and_submodules():
    m = make_module(temperature=0.5, hparams={"lr": 0.3, "proj_dim": 8})
    assert m.temperature == 0.5
    names = dict(m.named_children())
    assert isinstance(names["backbone"], nn.Linear) and isinstance(names["head"], nn.Linear)
    assert "backbone.weight" in m.state_dict()
    assert m.hparams.lr == 0.3 and m.hparams.proj_dim == 8


def test_forward_is_bound_and_callable_with_stage():
    m = make_module()
    batch = {"image": torch.randn(5, 6), "label": torch.zeros(5, dtype=torch.long)}
    out = m(batch, "val")
    assert set(out) == {"embedding", "label", "logits"}
    torch.testing.assert_close(out["embedding"], m.backbone(batch["image"]))


def test_forward_from_dotted_string(monkeypatch):
    # an importable module holding the forward (this test file's own __name__ may not be one)
    holder = types.ModuleType("ssl_core_test_forwards")
    holder.regression_forward = regression_forward
    monkeypatch.setitem(sys.modules, holder.__name__, holder)
    m = Module(
        forward="ssl_core_test_forwards.regression_forward",
        backbone=nn.Linear(6, 4),
        head=nn.Linear(4, 3),
    )
    assert m._forward_fn is regression_forward
    out = m({"image": torch.randn(2, 6), "label": torch.zeros(2, dtype=torch.long)}, "train")
    assert out["loss"].ndim == 0


def test_forward_unknown_dotted_string_names_the_path():
    with pytest.raises(ImportError, match=r"no_such_package_xyz.fwd"):
        Module(forward="no_such_package_xyz.fwd")


def test_positional_args_raise_clear_type_error():
    with pytest.raises(TypeError, match=r"keyword arguments only.*Module\(forward=f"):
        Module(regression_forward, backbone=nn.Linear(2, 2))


def test_missing_forward_names_the_fix():
    with pytest.raises(TypeError, match=r"needs a forward.*forward=f"):
        Module(backbone=nn.Linear(2, 2))


def test_kwarg_clashing_with_lightning_attribute():
    with pytest.raises(TypeError, match=r"'trainer'.*rename|trainer=.*clashes"):
        Module(forward=regression_forward, trainer=1)


def test_get_queue_shortcut_uses_trainer_callbacks():
    class Provider(Callback):
        def __init__(self):
            self.q = torch.arange(6.0).reshape(3, 2)

        def provides_queue(self, key):
            return key == "bank"

        def get_queue(self, key):
            return self.q

    seen = {}

    def fwd(self, batch, stage):
        seen["queue"] = self.get_queue("bank")
        out = regression_forward(self, batch, stage)
        return out

    provider = Provider()
    assert isinstance(provider, ssl_core.QueueProvider)
    m = make_module(forward=fwd)
    trainer(max_steps=1, callbacks=[provider]).fit(m, loader())
    assert seen["queue"] is provider.q
    assert ssl_core.find_queue(m, "bank") is provider.q
    with pytest.raises(LookupError, match='OnlineQueue\\(key="other"'):
        m.get_queue("other")


# ----------------------------------------------------------------------------- step errors


def test_forward_returning_non_dict():
    m = make_module(forward=lambda self, batch, stage: self.backbone(batch["image"]).sum())
    with pytest.raises(TypeError, match=r"returned Tensor.*must return a dict"):
        trainer(max_steps=1).fit(m, loader())


def test_training_output_without_loss_lists_keys():
    m = make_module(forward=lambda self, batch, stage: {"embedding": self.backbone(batch["image"])})
    with pytest.raises(KeyError, match=re.escape("no 'loss' (keys: ['embedding'])")):
        trainer(max_steps=1).fit(m, loader())


def test_non_scalar_loss():
    m = make_module(
        forward=lambda self, batch, stage: {"loss": self.backbone(batch["image"]).pow(2).sum(1)}
    )
    with pytest.raises(ValueError, match=re.escape("scalar tensor, got [4]") + ".*mean"):
        trainer(max_steps=1).fit(m, loader())


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    def fwd(self, batch, stage):
        loss = self.backbone(batch["image"]).pow(2).mean()
        if self.trainer.global_step == 3:
            loss = loss * float("nan")
        return {"loss": loss}

    m = make_module(forward=fwd)
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True, save_top_k=-1)
    t = trainer(max_steps=10, callbacks=[ckpt], enable_checkpointing=True)
    with pytest.raises(
        NonFiniteLossError, match=r"nan at global step 3 .*last good checkpoint"
    ) as e:
        t.fit(m, loader(n=40))
    assert e.value.step == 3
    # the save after the NaN step reads the device-side check first, so nothing bad is written
    assert t.global_step == 4
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert last["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())
    assert sorted(p.name for p in tmp_path.glob("epoch*.ckpt")) == [
        f"epoch=0-step={s}.ckpt" for s in (1, 2, 3)
    ]


@pytest.mark.parametrize("every", [1, 4])
def test_nan_stop_waits_for_the_next_log_interval_and_names_the_first_bad_step(every):
    def fwd(self, batch, stage):
        loss = self.backbone(batch["image"]).pow(2).mean()
        if self.trainer.global_step >= 5:  # every later step is bad too: the first one is named
            loss = loss * float("nan")
        return {"loss": loss}

    m = make_module(forward=fwd)
    t = trainer(max_steps=20, log_every_n_steps=every)
    with pytest.raises(NonFiniteLossError, match=r"nan at global step 5 .*log_every_n_steps") as e:
        t.fit(m, loader(n=80))
    assert e.value.step == 5
    # read after the step that makes global_step a multiple of log_every_n_steps
    assert t.global_step == (6 if every == 1 else 8)


def test_deferred_check_of_a_forward_raises_its_message_with_the_first_step():
    def fwd(self, batch, stage):
        x = batch["image"]
        self.defer_check((x.abs() > 1e9).any() | (self.trainer.global_step == 2), "bad input")
        return {"loss": self.backbone(x).pow(2).mean()}

    t = trainer(max_steps=8, log_every_n_steps=3)
    with pytest.raises(ValueError, match=r"bad input \(first seen at global step 2\)"):
        t.fit(make_module(forward=fwd), loader(n=40))
    assert t.global_step == 3


def test_inf_loss_is_also_caught():
    m = make_module(forward=lambda self, b, s: {"loss": self.backbone(b["image"]).sum() * math.inf})
    with pytest.raises(NonFiniteLossError, match="inf at global step 0"):
        trainer(max_steps=1).fit(m, loader())


# ----------------------------------------------------------------------------- outputs & logging


class Recorder(Callback):
    def __init__(self):
        self.train, self.val = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train.append(outputs)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        self.val.append(outputs)


def test_steps_return_outputs_to_callbacks_and_log_scalars():
    rec = Recorder()
    m = make_module()
    t = trainer(max_steps=2, callbacks=[rec], limit_val_batches=2, val_check_interval=2)
    t.fit(m, loader(), loader())
    assert len(rec.train) == 2 and {"loss", "embedding", "logits", "label", "aux"} <= set(
        rec.train[0]
    )
    assert rec.train[0]["embedding"].shape == (4, 4)
    assert len(rec.val) == 2 and "logits" in rec.val[0] and "loss" not in rec.val[0]
    logged = t.logged_metrics
    assert {"train/loss", "train/loss_epoch", "train/aux", "train/aux_epoch"} <= set(logged)
    # the step value logged is the loss of the last step's output
    torch.testing.assert_close(logged["train/loss"], rec.train[-1]["loss"].float())


def test_metrics_per_stage_from_named_keys():
    torchmetrics = pytest.importorskip("torchmetrics")
    m = make_module(
        metrics={
            "val": {
                "acc": torchmetrics.classification.MulticlassAccuracy(
                    num_classes=3, average="micro"
                )
            },
            "train": {
                "acc": {
                    "metric": torchmetrics.classification.MulticlassAccuracy(3, average="micro"),
                    "preds": "logits",
                    "target": "label",
                }
            },
        }
    )
    data = loader(n=12, batch_size=4)
    t = trainer(max_steps=1)
    metrics = t.validate(m, data, verbose=False)[0]
    expected = (
        torch.cat([m.head(m.backbone(b["image"])).argmax(1).eq(b["label"]) for b in data])
        .float()
        .mean()
    )
    assert metrics["val/acc"] == pytest.approx(expected.item(), abs=1e-6)


def test_metrics_given_as_name_dict_mean_val():
    torchmetrics = pytest.importorskip("torchmetrics")
    m = make_module(metrics={"acc": torchmetrics.classification.MulticlassAccuracy(3)})
    assert set(m._metric_keys) == {"val"}


def test_metric_missing_key_names_fix():
    torchmetrics = pytest.importorskip("torchmetrics")
    m = make_module(
        metrics={
            "acc": {"metric": torchmetrics.classification.MulticlassAccuracy(3), "preds": "nope"}
        }
    )
    with pytest.raises(KeyError, match="reads 'nope'"):
        trainer().validate(m, loader(), verbose=False)


def test_eval_only_module_validates_without_optimizer():
    def fwd(self, batch, stage):
        emb = self.backbone(batch["image"])
        return {"embedding": emb, "score": emb.mean()}

    m = make_module(forward=fwd, optim=False)
    assert m.configure_optimizers() is None
    res = trainer().validate(m, loader(n=8, batch_size=4), verbose=False)[0]
    data = DictData(8)
    expected = m.backbone(data.x).mean()
    assert res["val/score"] == pytest.approx(expected.item(), rel=1e-5)


def test_eval_only_module_fit_runs_without_updating():
    m = make_module(
        forward=lambda self, b, s: {"embedding": self.backbone(b["image"])}, optim=False
    )
    before = m.backbone.weight.clone()
    rec = Recorder()
    t = trainer(max_steps=-1, max_epochs=1, limit_train_batches=2, callbacks=[rec])
    t.fit(m, loader())
    assert len(rec.train) == 2 and t.global_step == 0
    torch.testing.assert_close(m.backbone.weight, before)
    with pytest.raises(ValueError, match=r"optim=False.*max_epochs"):
        trainer(max_steps=2).fit(m, loader())


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


def test_batch_transform_callable_applies_to_train_only():
    seen = []

    def fwd(self, batch, stage):
        seen.append((stage, batch.get("transformed", False)))
        return regression_forward(self, batch, stage)

    m = make_module(forward=fwd, batch_transforms=NoisyTransform())
    trainer(max_steps=-1, max_epochs=1, limit_train_batches=1, limit_val_batches=1).fit(
        m, loader(), loader()
    )
    assert ("train", True) in seen and ("val", False) in seen
    assert ("train", False) not in seen


def test_batch_transform_dict_per_stage():
    val_t = NoisyTransform()
    seen = []

    def fwd(self, batch, stage):
        seen.append((stage, batch.get("transformed", False)))
        return regression_forward(self, batch, stage)

    m = make_module(forward=fwd, batch_transforms={"val": val_t})
    trainer(max_steps=-1, max_epochs=1, limit_train_batches=1, limit_val_batches=1).fit(
        m, loader(), loader()
    )
    assert ("train", False) in seen and ("val", True) in seen


def test_batch_transform_rejects_unknown_stage():
    with pytest.raises(ValueError, match="unknown stages \\['training'\\]"):
        make_module(batch_transforms={"training": NoisyTransform()})


def test_batch_transform_state_survives_checkpoint(tmp_path):
    ref_t = NoisyTransform(seed=1)
    m = make_module(batch_transforms=ref_t)
    t = trainer(max_steps=2, enable_checkpointing=True, default_root_dir=tmp_path)
    t.fit(m, loader())
    path = tmp_path / "mid.ckpt"
    t.save_checkpoint(path)
    expected_next = torch.randn(3, generator=ref_t.generator)

    resumed_t = NoisyTransform(seed=99)
    m2 = make_module(batch_transforms=resumed_t)
    trainer(max_steps=2).validate(m2, loader(n=4), ckpt_path=path, verbose=False)
    assert resumed_t.calls == 2
    torch.testing.assert_close(torch.randn(3, generator=resumed_t.generator), expected_next)


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tmp_path):
    optim = {
        "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
        "scheduler": {"type": "CosineAnnealingLR", "T_max": 10},
    }
    m = make_module(hparams={"lr": 0.01, "note": "x"}, optim=optim)
    t = trainer(max_steps=3, enable_checkpointing=True, default_root_dir=tmp_path)
    t.fit(m, loader(n=4))  # one batch per epoch: every step sees the same batch
    path = tmp_path / "final.ckpt"
    t.save_checkpoint(path)

    loaded = Module.load_from_checkpoint(
        path, forward=regression_forward, backbone=nn.Linear(6, 4), head=nn.Linear(4, 3)
    )
    assert loaded.hparams.lr == 0.01 and loaded.hparams.note == "x"
    for key, value in m.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    batch = {"image": torch.randn(3, 6), "label": torch.zeros(3, dtype=torch.long)}
    torch.testing.assert_close(loaded(batch, "val")["logits"], m(batch, "val")["logits"])

    # resuming restores optimiser (momentum) and scheduler state and continues counting steps:
    # 3 steps + resume to 5 equals 5 uninterrupted steps (Lightning's resume may re-enumerate
    # batches, hence a single-batch epoch)
    m2 = make_module(optim=optim)
    t2 = trainer(max_steps=5)
    t2.fit(m2, loader(n=4), ckpt_path=path)
    assert t2.global_step == 5
    m3 = make_module(optim=optim)
    trainer(max_steps=5).fit(m3, loader(n=4))
    torch.testing.assert_close(m2.backbone.weight, m3.backbone.weight)
    assert t2.lr_scheduler_configs[0].scheduler.last_epoch == 5
