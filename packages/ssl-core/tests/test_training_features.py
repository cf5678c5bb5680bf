import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssl_core import Module
from ssl_core.backbone import SmallResNet


class Regression(Dataset):
    def __init__(self, n=16, dim=5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = torch.randn(n, 2, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "target": self.y[i]}


def mse_forward(self, batch, stage):
    pred = self.head(torch.tanh(self.backbone(batch["image"])))
    return {"loss": nn.functional.mse_loss(pred, batch["target"]), "pred": pred}


def make(optim, seed=0, **kwargs):
    torch.manual_seed(seed)
    return Module(
        forward=mse_forward, backbone=nn.Linear(5, 4), head=nn.Linear(4, 2), optim=optim, **kwargs
    )


def fit(module, batch_size, n=16, **kwargs):
    kwargs.setdefault("max_steps", -1)
    L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    ).fit(module, DataLoader(Regression(n), batch_size=batch_size))
    return module


SGD_CONSTANT = {"optimizer": {"type": "SGD", "lr": 0.5}, "scheduler": None}


def test_gradient_accumulation_matches_full_batch():
    full = fit(make(SGD_CONSTANT), batch_size=8, max_steps=2)
    accumulated = fit(make(SGD_CONSTANT), batch_size=2, max_steps=2, accumulate_grad_batches=4)
    for (name, a), b in zip(full.named_parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.allclose(full.backbone.weight, make(SGD_CONSTANT).backbone.weight)


def test_gradient_clipping_bounds_the_update():
    start = make(SGD_CONSTANT)
    before = [p.detach().clone() for p in start.parameters()]
    clipped = fit(
        make({"optimizer": {"type": "SGD", "lr": 1.0}, "scheduler": None}),
        16,
        max_steps=1,
        gradient_clip_val=1e-3,
    )
    step = torch.sqrt(
        sum(((p - b) ** 2).sum() for p, b in zip(clipped.parameters(), before, strict=True))
    )
    assert step.item() == pytest.approx(1e-3, rel=1e-3)


def test_bf16_mixed_runs_forward_under_autocast():
    dtypes = []

    def fwd(self, batch, stage):
        h = self.backbone(batch["image"])
        dtypes.append(h.dtype)
        return {"loss": nn.functional.mse_loss(self.head(h).float(), batch["target"])}

    torch.manual_seed(0)
    m = Module(forward=fwd, backbone=nn.Linear(5, 4), head=nn.Linear(4, 2))
    before = m.backbone.weight.detach().clone()
    fit(m, 8, max_steps=2, precision="bf16-mixed")
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    assert m.backbone.weight.dtype == torch.float32
    assert not torch.equal(m.backbone.weight, before)


class ImageData(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"image": torch.randn(3, 12, 12, generator=g), "target": torch.randn(2, generator=g)}


def conv_forward(self, batch, stage):
    self.formats.append(batch["image"].is_contiguous(memory_format=torch.channels_last))
    pred = self.head(self.backbone(batch["image"]))
    return {"loss": nn.functional.mse_loss(pred, batch["target"]), "pred": pred}


def _conv_module(**kwargs):
    torch.manual_seed(0)
    return Module(
        forward=conv_forward,
        backbone=SmallResNet(widths=(8, 16)),
        head=nn.Linear(16, 2),
        formats=[],
        optim=SGD_CONSTANT,
        **kwargs,
    )


def _fit_images(module):
    L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_steps=2,
    ).fit(module, DataLoader(ImageData(), batch_size=4))
    return module


def test_channels_last_matches_default_layout():
    plain = _fit_images(_conv_module())
    cl = _fit_images(_conv_module(channels_last=True))
    assert cl.formats == [True, True] and plain.formats == [False, False]
    assert cl.backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(plain.parameters(), cl.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_compile_modules_matches_eager_and_keeps_state_dict_keys():
    eager = fit(make(SGD_CONSTANT), 8, max_steps=2)
    compiled = fit(
        make(SGD_CONSTANT, compile_modules={"backbone": {"backend": "aot_eager"}}), 8, max_steps=2
    )
    assert compiled.backbone._compiled_call_impl is not None
    assert set(compiled.state_dict()) == set(eager.state_dict())
    for a, b in zip(eager.parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_compile_modules_must_name_submodules():
    with pytest.raises(ValueError, match=r"not submodules.*'backbone', 'head'"):
        make(None, compile_modules=["encoder"])
