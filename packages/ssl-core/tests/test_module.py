import math
import re
import sys
import types

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn

import ssl_core
from ssl_core import Module, NonFiniteLossError

# ----------------------------------------------------------------------------- construction


def test_kwargs_become_attributes_and_submodules(kit):
    m = kit.module(temperature=0.5, hparams={"lr": 0.3, "proj_dim": 8})
    assert m.temperature == 0.5
    names = dict(m.named_children())
    assert isinstance(names["backbone"], nn.Linear) and isinstance(names["head"], nn.Linear)
    assert "backbone.weight" in m.state_dict()
    assert m.hparams.lr == 0.3 and m.hparams.proj_dim == 8


def test_forward_is_bound_and_callable_with_stage(kit):
    m = kit.module()
    batch = {"image": torch.randn(5, 6), "label": torch.zeros(5, dtype=torch.long)}
    out = m(batch, "val")
    assert set(out) == {"embedding", "label", "logits"}
    torch.testing.assert_close(out["embedding"], m.backbone(batch["image"]))


def test_forward_from_dotted_string(kit, monkeypatch):
    # an importable module holding the forward (this test file's own __name__ may not be one)
    holder = types.ModuleType("ssl_core_test_forwards")
    holder.regression_forward = kit.regression_forward
    monkeypatch.setitem(sys.modules, holder.__name__, holder)
    m = Module(
        forward="ssl_core_test_forwards.regression_forward",
        backbone=nn.Linear(6, 4),
        head=nn.Linear(4, 3),
    )
    assert m._forward_fn is kit.regression_forward
    out = m({"image": torch.randn(2, 6), "label": torch.zeros(2, dtype=torch.long)}, "train")
    assert out["loss"].ndim == 0


def test_forward_unknown_dotted_string_names_the_path():
    with pytest.raises(ImportError, match=r"no_such_package_xyz.fwd"):
        Module(forward="no_such_package_xyz.fwd")


def test_positional_args_raise_clear_type_error(kit):
    with pytest.raises(TypeError, match=r"keyword arguments only.*Module\(forward=f"):
        Module(kit.regression_forward, backbone=nn.Linear(2, 2))


def test_missing_forward_names_the_fix():
    with pytest.raises(TypeError, match=r"needs a forward.*forward=f"):
        Module(backbone=nn.Linear(2, 2))


def test_kwarg_clashing_with_lightning_attribute(kit):
    with pytest.raises(TypeError, match=r"'kit.trainer'.*rename|trainer=.*clashes"):
        Module(forward=kit.regression_forward, trainer=1)


def test_get_queue_shortcut_uses_trainer_callbacks(kit):
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
        out = kit.regression_forward(self, batch, stage)
        return out

    provider = Provider()
    assert isinstance(provider, ssl_core.QueueProvider)
    m = kit.module(forward=fwd)
    kit.trainer(max_steps=1, callbacks=[provider]).fit(m, kit.loader())
    assert seen["queue"] is provider.q
    assert ssl_core.find_queue(m, "bank") is provider.q
    with pytest.raises(LookupError, match='OnlineQueue\\(key="other"'):
        m.get_queue("other")


# ----------------------------------------------------------------------------- step errors


def test_forward_returning_non_dict(kit):
    m = kit.module(forward=lambda self, batch, stage: self.backbone(batch["image"]).sum())
    with pytest.raises(TypeError, match=r"returned Tensor.*must return a dict"):
        kit.trainer(max_steps=1).fit(m, kit.loader())


def test_training_output_without_loss_lists_keys(kit):
    m = kit.module(forward=lambda self, batch, stage: {"embedding": self.backbone(batch["image"])})
    with pytest.raises(KeyError, match=re.escape("no 'loss' (keys: ['embedding'])")):
        kit.trainer(max_steps=1).fit(m, kit.loader())


def test_non_scalar_loss(kit):
    m = kit.module(
        forward=lambda self, batch, stage: {"loss": self.backbone(batch["image"]).pow(2).sum(1)}
    )
    with pytest.raises(ValueError, match=re.escape("scalar tensor, got [4]") + ".*mean"):
        kit.trainer(max_steps=1).fit(m, kit.loader())


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(kit, tmp_path):
    def fwd(self, batch, stage):
        loss = self.backbone(batch["image"]).pow(2).mean()
        if self.trainer.global_step == 3:
            loss = loss * float("nan")
        return {"loss": loss}

    m = kit.module(forward=fwd)
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True, save_top_k=-1)
    t = kit.trainer(max_steps=10, callbacks=[ckpt], enable_checkpointing=True)
    with pytest.raises(
        NonFiniteLossError, match=r"nan at global step 3 .*last good checkpoint"
    ) as e:
        t.fit(m, kit.loader(n=40))
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
def test_nan_stop_waits_for_the_next_log_interval_and_names_the_first_bad_step(kit, every):
    def fwd(self, batch, stage):
        loss = self.backbone(batch["image"]).pow(2).mean()
        if self.trainer.global_step >= 5:  # every later step is bad too: the first one is named
            loss = loss * float("nan")
        return {"loss": loss}

    m = kit.module(forward=fwd)
    t = kit.trainer(max_steps=20, log_every_n_steps=every)
    with pytest.raises(NonFiniteLossError, match=r"nan at global step 5 .*log_every_n_steps") as e:
        t.fit(m, kit.loader(n=80))
    assert e.value.step == 5
    # read after the step that makes global_step a multiple of log_every_n_steps
    assert t.global_step == (6 if every == 1 else 8)


def test_deferred_check_of_a_forward_raises_its_message_with_the_first_step(kit):
    def fwd(self, batch, stage):
        x = batch["image"]
        self.defer_check((x.abs() > 1e9).any() | (self.trainer.global_step == 2), "bad input")
        return {"loss": self.backbone(x).pow(2).mean()}

    t = kit.trainer(max_steps=8, log_every_n_steps=3)
    with pytest.raises(ValueError, match=r"bad input \(first seen at global step 2\)"):
        t.fit(kit.module(forward=fwd), kit.loader(n=40))
    assert t.global_step == 3


def test_inf_loss_is_also_caught(kit):
    m = kit.module(forward=lambda self, b, s: {"loss": self.backbone(b["image"]).sum() * math.inf})
    with pytest.raises(NonFiniteLossError, match="inf at global step 0"):
        kit.trainer(max_steps=1).fit(m, kit.loader())


# ----------------------------------------------------------------------------- outputs & logging


class Recorder(Callback):
    def __init__(self):
        self.train, self.val = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train.append(outputs)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        self.val.append(outputs)


def test_steps_return_outputs_to_callbacks_and_log_scalars(kit):
    rec = Recorder()
    m = kit.module()
    t = kit.trainer(max_steps=2, callbacks=[rec], limit_val_batches=2, val_check_interval=2)
    t.fit(m, kit.loader(), kit.loader())
    assert len(rec.train) == 2 and {"loss", "embedding", "logits", "label", "aux"} <= set(
        rec.train[0]
    )
    assert rec.train[0]["embedding"].shape == (4, 4)
    assert len(rec.val) == 2 and "logits" in rec.val[0] and "loss" not in rec.val[0]
    logged = t.logged_metrics
    assert {"train/loss", "train/loss_epoch", "train/aux", "train/aux_epoch"} <= set(logged)
    # the step value logged is the loss of the last step's output
    torch.testing.assert_close(logged["train/loss"], rec.train[-1]["loss"].float())


def test_metrics_per_stage_from_named_keys(kit):
    torchmetrics = pytest.importorskip("torchmetrics")
    m = kit.module(
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
    data = kit.loader(n=12, batch_size=4)
    t = kit.trainer(max_steps=1)
    metrics = t.validate(m, data, verbose=False)[0]
    expected = (
        torch.cat([m.head(m.backbone(b["image"])).argmax(1).eq(b["label"]) for b in data])
        .float()
        .mean()
    )
    assert metrics["val/acc"] == pytest.approx(expected.item(), abs=1e-6)


def test_metrics_given_as_name_dict_mean_val(kit):
    torchmetrics = pytest.importorskip("torchmetrics")
    m = kit.module(metrics={"acc": torchmetrics.classification.MulticlassAccuracy(3)})
    assert set(m._metric_keys) == {"val"}


def test_metric_missing_key_names_fix(kit):
    torchmetrics = pytest.importorskip("torchmetrics")
    m = kit.module(
        metrics={
            "acc": {"metric": torchmetrics.classification.MulticlassAccuracy(3), "preds": "nope"}
        }
    )
    with pytest.raises(KeyError, match="reads 'nope'"):
        kit.trainer().validate(m, kit.loader(), verbose=False)


def test_eval_only_module_validates_without_optimizer(kit):
    def fwd(self, batch, stage):
        emb = self.backbone(batch["image"])
        return {"embedding": emb, "score": emb.mean()}

    m = kit.module(forward=fwd, optim=False)
    assert m.configure_optimizers() is None
    res = kit.trainer().validate(m, kit.loader(n=8, batch_size=4), verbose=False)[0]
    data = kit.DictData(8)
    expected = m.backbone(data.x).mean()
    assert res["val/score"] == pytest.approx(expected.item(), rel=1e-5)


def test_eval_only_module_fit_runs_without_updating(kit):
    m = kit.module(forward=lambda self, b, s: {"embedding": self.backbone(b["image"])}, optim=False)
    before = m.backbone.weight.clone()
    rec = Recorder()
    t = kit.trainer(max_steps=-1, max_epochs=1, limit_train_batches=2, callbacks=[rec])
    t.fit(m, kit.loader())
    assert len(rec.train) == 2 and t.global_step == 0
    torch.testing.assert_close(m.backbone.weight, before)
    with pytest.raises(ValueError, match=r"optim=False.*max_epochs"):
        kit.trainer(max_steps=2).fit(m, kit.loader())
