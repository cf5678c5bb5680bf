"""MoCo v3, MAE and I-JEPA losses against float64 references of the official code."""

import pytest
import torch
import torch.nn.functional as F

from ssl_losses import IJEPALoss, MAELoss, MoCoV3Loss


def _randn(seed, *shape, grad=True):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(grad)


def _assert_same(ours, ref, inputs):
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    got, want = torch.autograd.grad(ours, inputs), torch.autograd.grad(ref, inputs)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- MoCo v3


def ref_mocov3(q1, q2, k1, k2, t):
    """facebookresearch/moco-v3 moco/builder.py MoCo.contrastive_loss, world size 1."""

    def ctr(q, k):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = torch.einsum("nc,mc->nm", [q, k]) / t
        labels = torch.arange(logits.shape[0])
        return torch.nn.CrossEntropyLoss()(logits, labels) * (2 * t)

    with torch.no_grad():
        k1, k2 = k1.detach(), k2.detach()
    return ctr(q1, k2) + ctr(q2, k1)


@pytest.mark.parametrize("t", [0.2, 1.0])
def test_mocov3_value_and_gradient_match_official(t):
    q1, q2, k1, k2 = (_randn(s, 6, 5) for s in range(4))
    ours = MoCoV3Loss(temperature=t)(q1, q2, k1, k2)
    _assert_same(ours, ref_mocov3(q1, q2, k1, k2, t), (q1, q2))


def test_mocov3_keys_get_no_gradient_and_pair_with_the_other_view():
    q1, q2, k1, k2 = (_randn(s, 4, 3) for s in range(4, 8))
    loss = MoCoV3Loss()(q1, q2, k1, k2)
    loss.backward()
    assert k1.grad is None and k2.grad is None
    # q1 is scored against k2 (the other view's key), so it is blind to k1.
    (g_a,) = torch.autograd.grad(MoCoV3Loss()(q1, q2, k1, k2), q1)
    (g_b,) = torch.autograd.grad(MoCoV3Loss()(q1, q2, 3 * k1 + 1, k2), q1)
    torch.testing.assert_close(g_a, g_b, rtol=0, atol=1e-15)


# ---------------------------------------------------------------- MAE


def ref_mae(pred, target, mask, norm_pix_loss=True):
    """facebookresearch/mae models_mae.py MaskedAutoencoderViT.forward_loss (mask 1 = removed)."""
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = (pred - target) ** 2
    loss = loss.mean(dim=-1)
    mask = mask.double()
    return (loss * mask).sum() / mask.sum()


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_mae_value_and_gradient_match_official(norm_pix_loss):
    pred, target = _randn(0, 3, 8, 12), _randn(1, 3, 8, 12, grad=False)
    mask = torch.rand(3, 8, generator=torch.Generator().manual_seed(0)) < 0.75
    ours = MAELoss(norm_pix_loss)(pred, target, mask)
    _assert_same(ours, ref_mae(pred, target, mask, norm_pix_loss), (pred,))


def test_mae_loss_only_on_masked_patches():
    pred, target = _randn(2, 2, 6, 4), _randn(3, 2, 6, 4)
    mask = torch.tensor([[True, False, True, False, False, True], [False] * 5 + [True]])
    loss_fn = MAELoss()
    base = loss_fn(pred, target, mask)
    moved = pred.detach().clone()
    moved[~mask] += 100.0  # visible patches: any prediction there is ignored
    assert loss_fn(moved, target, mask).item() == pytest.approx(base.item(), rel=1e-12)
    base.backward()
    assert pred.grad[~mask].abs().max() == 0 and pred.grad[mask].abs().min() > 0
    assert target.grad is None  # the target is data, detached


# ---------------------------------------------------------------- I-JEPA


def _layer_norm(x, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def test_ijepa_l2_on_layer_normalised_targets():
    pred, target = _randn(4, 3, 5, 8), 3 * _randn(5, 3, 5, 8) + 1
    ours = IJEPALoss()(pred, target)
    ref = ((pred - _layer_norm(target.detach())) ** 2).mean()
    _assert_same(ours, ref, (pred,))


def test_ijepa_smooth_l1_is_the_official_code():
    pred, target = _randn(6, 4, 8), 2 * _randn(7, 4, 8)
    ours = IJEPALoss(loss_type="smooth_l1")(pred, target)
    diff = (pred - _layer_norm(target.detach())).abs()
    ref = torch.where(diff < 1.0, 0.5 * diff**2, diff - 0.5).mean()  # Huber, beta = 1
    _assert_same(ours, ref, (pred,))


def test_ijepa_targets_are_detached():
    pred, target = _randn(8, 2, 3, 4), _randn(9, 2, 3, 4)
    IJEPALoss()(pred, target).backward()
    assert target.grad is None and pred.grad.abs().max() > 0
