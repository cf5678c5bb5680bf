"""Gradients, mixed precision, degenerate inputs, error messages and import hygiene."""

import subprocess
import sys

import pytest
import torch

from ssl_losses import (
    BarlowTwinsLoss,
    BYOLLoss,
    InfoNCELoss,
    NegativeCosineSimilarity,
    NTXEntLoss,
    VICRegLoss,
)

PAIR_LOSSES = [
    NTXEntLoss(temperature=0.5),
    VICRegLoss(),
    BarlowTwinsLoss(lambda_=0.05),
    BYOLLoss(),
    NegativeCosineSimilarity(),
]
IDS = [type(f).__name__ for f in PAIR_LOSSES]


def _randn(seed, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("loss_fn", PAIR_LOSSES, ids=IDS)
@pytest.mark.parametrize("n,d", [(4, 3), (3, 5)])
def test_gradcheck_pair_losses(loss_fn, n, d):
    z_a = _randn(0, n, d).requires_grad_()
    z_b = _randn(1, n, d).requires_grad_()
    assert torch.autograd.gradcheck(loss_fn, (z_a, z_b))


def test_gradcheck_infonce_with_mask():
    anchors = _randn(0, 3, 4).requires_grad_()
    candidates = _randn(1, 5, 4).requires_grad_()
    pos = torch.tensor([4, 0, 2])
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, 1] = mask[2, 3] = True
    assert torch.autograd.gradcheck(
        lambda a, c: InfoNCELoss(0.3)(a, c, pos, mask=mask), (anchors, candidates)
    )


@pytest.mark.parametrize("loss_fn", PAIR_LOSSES, ids=IDS)
@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_inputs_compute_in_float32(loss_fn, half):
    z_a, z_b = _randn(0, 16, 32, dtype=torch.float32), _randn(1, 16, 32, dtype=torch.float32)
    a_h, b_h = z_a.to(half).requires_grad_(), z_b.to(half)
    loss = loss_fn(a_h, b_h)
    assert loss.dtype == torch.float32
    # Exactly the float32 computation on the rounded inputs ...
    rounded = loss_fn(a_h.detach().float(), b_h.float())
    assert loss.item() == pytest.approx(rounded.item(), rel=1e-6, abs=1e-6)
    # ... and within the input rounding error of the float32 loss.
    assert loss.item() == pytest.approx(loss_fn(z_a, z_b).item(), rel=2e-2, abs=2e-2)
    loss.backward()
    assert a_h.grad.dtype == half and torch.isfinite(a_h.grad.float()).all()


def test_infonce_half_precision():
    a, c = _randn(0, 8, 16, dtype=torch.float32), _randn(1, 12, 16, dtype=torch.float32)
    pos = torch.arange(8)
    loss = InfoNCELoss()(a.bfloat16(), c.bfloat16(), pos)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(InfoNCELoss()(a, c, pos).item(), rel=2e-2)


@pytest.mark.parametrize("loss_fn", PAIR_LOSSES, ids=IDS)
def test_zero_vectors_give_finite_loss_and_gradients(loss_fn):
    z_a = torch.zeros(4, 3, requires_grad=True)
    z_b = torch.zeros(4, 3, requires_grad=True)
    loss = loss_fn(z_a, z_b)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z_a.grad).all() and torch.isfinite(z_b.grad).all()


def test_infonce_zero_vectors_are_finite():
    a = torch.zeros(2, 3, requires_grad=True)
    loss = InfoNCELoss()(a, torch.zeros(4, 3), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all()


# ---------------------------------------------------------------- errors name problem and fix


@pytest.mark.parametrize("loss_fn", PAIR_LOSSES, ids=IDS)
def test_views_of_different_shapes_are_rejected(loss_fn):
    with pytest.raises(ValueError, match=r"same shape.*\(4, 3\).*\(5, 3\).*same samples"):
        loss_fn(torch.randn(4, 3), torch.randn(5, 3))


@pytest.mark.parametrize("loss_fn", PAIR_LOSSES, ids=IDS)
def test_non_2d_inputs_are_rejected(loss_fn):
    with pytest.raises(ValueError, match=r"2-D \[batch, dim\].*\(4, 3, 2\).*flatten\(1\)"):
        loss_fn(torch.randn(4, 3, 2), torch.randn(4, 3, 2))
    with pytest.raises(ValueError, match=r"floating-point.*torch.int64.*float"):
        loss_fn(torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long))


@pytest.mark.parametrize("loss_fn", [VICRegLoss(), BarlowTwinsLoss()], ids=["vicreg", "barlow"])
def test_batch_too_small_for_a_variance(loss_fn):
    with pytest.raises(ValueError, match=r"at least 2 samples.*got 1.*increase the batch size"):
        loss_fn(torch.randn(1, 8), torch.randn(1, 8))


def test_vicreg_unknown_variance_form():
    with pytest.raises(ValueError, match=r"variance_form must be 'official'.*or 'paper'.*'half'"):
        VICRegLoss(variance_form="half")


def test_empty_batches_are_rejected():
    with pytest.raises(ValueError, match="empty batch"):
        NTXEntLoss()(torch.randn(0, 3), torch.randn(0, 3))
    with pytest.raises(ValueError, match="at least one row"):
        InfoNCELoss()(torch.randn(0, 3), torch.randn(2, 3), torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize("cls", [NTXEntLoss, InfoNCELoss])
@pytest.mark.parametrize("t", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_temperature(cls, t):
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        cls(temperature=t)


@pytest.mark.parametrize(
    "make",
    [
        lambda: VICRegLoss(sim_weight=-1.0),
        lambda: VICRegLoss(var_weight=-0.5),
        lambda: VICRegLoss(cov_weight=float("nan")),
        lambda: BarlowTwinsLoss(lambda_=-0.005),
    ],
)
def test_negative_weights_are_rejected(make):
    with pytest.raises(ValueError, match=r">= 0.*never a negative weight"):
        make()


@pytest.mark.parametrize("make", [lambda: VICRegLoss(eps=0.0), lambda: BarlowTwinsLoss(eps=-1)])
def test_non_positive_eps_is_rejected(make):
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        make()


def test_zero_weights_switch_terms_off():
    z_a, z_b = _randn(0, 6, 4), _randn(1, 6, 4)
    only_sim = VICRegLoss(sim_weight=1.0, var_weight=0.0, cov_weight=0.0)(z_a, z_b)
    assert only_sim.item() == pytest.approx(torch.nn.functional.mse_loss(z_a, z_b).item())


def test_infonce_input_errors():
    loss_fn = InfoNCELoss()
    a, c = torch.randn(3, 4), torch.randn(5, 4)
    with pytest.raises(ValueError, match="same embedding dimension"):
        loss_fn(a, torch.randn(5, 6), torch.arange(3))
    with pytest.raises(ValueError, match=r"positive_idx must be an integer tensor of shape \[A\]"):
        loss_fn(a, c, torch.arange(2))
    with pytest.raises(ValueError, match="positive_idx must be an integer"):
        loss_fn(a, c, torch.zeros(3))
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \[A, C_total\]"):
        loss_fn(a, c, torch.arange(3), mask=torch.zeros(3, 4, dtype=torch.bool))


def test_importing_ssl_losses_does_not_import_lightning():
    code = (
        "import sys, ssl_losses; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
