import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from ssl_callbacks import OnlineKNN, OnlineProbe


def separable(n=96, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, generator=g)
    x = torch.randn(n * 3, dim, generator=g)
    margin = x @ w
    keep = margin.abs() > 0.5
    x, margin = x[keep][:n], margin[keep][:n]
    return x, (margin > 0).long()


class GradRecorder(pl.Callback):
    def __init__(self):
        self.grads = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.grads.append(pl_module.backbone.weight.grad.clone())


def make_probe(lr=0.05):
    torch.manual_seed(0)
    return OnlineProbe(
        "linear",
        "embedding",
        "label",
        probe=nn.Linear(6, 2),
        optimizer=lambda params: torch.optim.AdamW(params, lr=lr),
    )


def test_probe_learns_separable_problem(toy, tmp_path):
    x, y = separable()
    probe = make_probe()
    trainer = toy.trainer(tmp_path, [probe], max_epochs=6)
    trainer.fit(toy.Module(dim=6, identity=True), toy.loader(x, y), toy.loader(x, y))
    assert float(trainer.callback_metrics["val/linear_top1"]) >= 0.97
    assert "train/linear_loss" in trainer.callback_metrics
    logits = probe.probe(x)
    assert (logits.argmax(1) == y).float().mean() >= 0.97


class RecordingModule(pl.LightningModule):
    """Trainable backbone; stores its gradient right after the main backward."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(6, 6)
        self.after_backward = []

    def training_step(self, batch, batch_idx):
        emb = self.backbone(batch["x"])
        return {"loss": emb.pow(2).mean(), "embedding": emb}

    def on_after_backward(self):
        self.after_backward.append(self.backbone.weight.grad.clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("probe_first", [True, False])
def test_probe_leaves_backbone_gradients_and_optimiser_alone(toy, tmp_path, probe_first):
    x, y = separable(n=32)
    probe, recorder = make_probe(), GradRecorder()
    callbacks = [probe, recorder] if probe_first else [recorder, probe]
    module = RecordingModule()
    trainer = toy.trainer(tmp_path, callbacks, max_epochs=1)
    trainer.fit(module, toy.loader(x, y))
    assert len(recorder.grads) == len(module.after_backward) == 4
    for seen, reference in zip(recorder.grads, module.after_backward, strict=True):
        assert torch.equal(seen, reference)
    probe_params = {id(p) for p in probe.probe.parameters()}
    main_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert not probe_params & main_params
    assert not probe_params & {id(p) for p in module.parameters()}
    assert all(p.grad is not None for p in probe.probe.parameters())  # it did train


def _probe_weights(toy, tmp_path, order, max_epochs=2, ckpt_path=None, save_to=None):
    x, y = separable(n=40)
    pl.seed_everything(0)
    probe = make_probe(lr=0.01)
    knn = OnlineKNN("knn", "embedding", "label", queue_length=16, k=3, num_classes=2)
    callbacks = [probe, knn] if order == "probe_first" else [knn, probe]
    trainer = toy.trainer(tmp_path, callbacks, max_epochs=max_epochs)
    module = toy.Module(dim=6)
    trainer.fit(module, toy.loader(x, y), toy.loader(x, y), ckpt_path=ckpt_path)
    if save_to:
        trainer.save_checkpoint(save_to)
    return [p.detach().clone() for p in probe.probe.parameters()]


def test_probe_result_independent_of_callback_order(toy, tmp_path):
    a = _probe_weights(toy, tmp_path / "a", "probe_first")
    b = _probe_weights(toy, tmp_path / "b", "knn_first")
    for pa, pb in zip(a, b, strict=True):
        assert torch.equal(pa, pb)


def test_probe_checkpoint_resume_is_exact(toy, tmp_path):
    ckpt = tmp_path / "probe.ckpt"
    _probe_weights(toy, tmp_path / "a", "probe_first", max_epochs=1, save_to=ckpt)
    resumed = _probe_weights(toy, tmp_path / "b", "probe_first", ckpt_path=str(ckpt))
    straight = _probe_weights(toy, tmp_path / "c", "probe_first")
    for pa, pb in zip(resumed, straight, strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-7)
    state = torch.load(ckpt, weights_only=False)["callbacks"]["OnlineProbe[linear]"]
    assert state["optimizer"]["state"]  # AdamW moments are saved


def test_bad_inputs(toy, tmp_path):
    with pytest.raises(TypeError, match=r"probe must be an nn\.Module"):
        OnlineProbe("p", "embedding", "label", probe="linear")
    x, y = separable(n=16)
    probe = make_probe()
    trainer = toy.trainer(tmp_path, [probe])
    with pytest.raises(ValueError, match=r"got label 5 in a training batch.*num_classes=2"):
        trainer.fit(toy.Module(dim=6), toy.loader(x, torch.full_like(y, 5)))
