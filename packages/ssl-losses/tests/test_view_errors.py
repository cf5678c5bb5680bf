"""Multi-view, distillation and masked losses: errors that name the fix; gradcheck."""

import pytest
import torch

from ssl_losses import (
    DINOLoss,
    IJEPALoss,
    MAELoss,
    MoCoV3Loss,
    SwAVLoss,
    iBOTPatchLoss,
    sinkhorn_knopp,
)


def _v(*shape, count=2):
    return [torch.randn(*shape) for _ in range(count)]


def test_dino_rejects_bad_views():
    loss_fn = DINOLoss(8)
    with pytest.raises(ValueError, match=r"student_out is an empty list; pass at least one view"):
        loss_fn([], _v(4, 8))
    with pytest.raises(ValueError, match=r"must be a list with one tensor.*chunk\(n_views\)"):
        loss_fn(torch.randn(8, 8), _v(4, 8))
    with pytest.raises(
        ValueError, match=r"student_out\[1\] must be 2-D \[N, out_dim=8\].*per view"
    ):
        loss_fn([torch.randn(4, 8), torch.randn(2, 4, 8)], _v(4, 8))
    with pytest.raises(ValueError, match=r"same shape.*student_out\[0\] \(4, 8\).*\[2\] \(3, 8\)"):
        loss_fn([torch.randn(4, 8), torch.randn(4, 8), torch.randn(3, 8)], _v(4, 8))
    with pytest.raises(ValueError, match=r"\[N, out_dim=8\] with the same N.*set out_dim"):
        loss_fn(_v(4, 9, count=3), _v(4, 9))
    with pytest.raises(ValueError, match=r"floating-point.*torch.int64.*\.float\(\)"):
        loss_fn(_v(4, 8, count=3), [torch.ones(4, 8, dtype=torch.long)] * 2)
    with pytest.raises(ValueError, match=r"2 student and 3 teacher views.*every teacher view"):
        loss_fn(_v(4, 8), _v(4, 8, count=3))
    with pytest.raises(ValueError, match=r"epoch must be an integer >= 0"):
        loss_fn(_v(4, 8, count=3), _v(4, 8), epoch=-1)


@pytest.mark.parametrize("cls", [DINOLoss, iBOTPatchLoss])
def test_distillation_constructor_checks(cls):
    with pytest.raises(ValueError, match="out_dim must be a positive integer"):
        cls(0)
    with pytest.raises(ValueError, match="teacher_temp must be a finite number > 0"):
        cls(8, teacher_temp=0.0)
    with pytest.raises(ValueError, match="student_temp must be a finite number > 0"):
        cls(8, student_temp=-1.0)
    with pytest.raises(ValueError, match=r"center_momentum must be in \[0, 1\]"):
        cls(8, center_momentum=1.5)
    with pytest.raises(ValueError, match="warmup_teacher_temp_epochs must be an integer >= 0"):
        cls(8, warmup_teacher_temp_epochs=-2)


def test_ibot_rejects_bad_masks_and_view_counts():
    loss_fn = iBOTPatchLoss(6)
    s, t = _v(2, 5, 6), _v(2, 5, 6)
    with pytest.raises(ValueError, match=r"masks\[0\] must be a bool tensor \[N, L\].*\.bool\(\)"):
        loss_fn(s, t, [torch.ones(2, 5), torch.ones(2, 5)])
    with pytest.raises(ValueError, match=r"masks\[0\].*flatten a \[N, h, w\] mask"):
        loss_fn(s, t, [torch.ones(2, 5, 1, dtype=torch.bool)] * 2)
    with pytest.raises(
        ValueError, match=r"2 student, 2 teacher and 1 mask views; pass one of each"
    ):
        loss_fn(s, t, [torch.ones(2, 5, dtype=torch.bool)])
    with pytest.raises(ValueError, match=r"masks \[N, L\].*mask \(2, 4\)"):
        loss_fn(s, t, [torch.ones(2, 4, dtype=torch.bool)] * 2)
    with pytest.raises(ValueError, match=r"student_patches\[0\] must be 3-D \[N, L, out_dim=6\]"):
        loss_fn(_v(2, 6), t, [torch.ones(2, 5, dtype=torch.bool)] * 2)


def test_swav_rejects_bad_views():
    loss_fn = SwAVLoss()
    with pytest.raises(ValueError, match="high_resolution_scores is an empty list"):
        loss_fn([], _v(4, 10))
    with pytest.raises(ValueError, match=r"low-resolution views \(3, 10\) must match.*\(4, 10\)"):
        loss_fn(_v(4, 10), _v(3, 10))
    with pytest.raises(ValueError, match=r"got 1 view.*at least two"):
        loss_fn(_v(4, 10, count=1), [])
    with pytest.raises(ValueError, match=r"one \[Q, K=10\] tensor per high-resolution view \(2\)"):
        loss_fn(_v(4, 10), [], _v(6, 10, count=1))
    with pytest.raises(ValueError, match="sinkhorn_iterations must be an integer >= 1"):
        SwAVLoss(sinkhorn_iterations=0)
    with pytest.raises(ValueError, match="sinkhorn_epsilon must be a finite number > 0"):
        SwAVLoss(sinkhorn_epsilon=0.0)
    with pytest.raises(ValueError, match=r"scores must be a tensor \[B, K\] or \[V, B, K\]"):
        sinkhorn_knopp(torch.randn(10))
    with pytest.raises(ValueError, match="sinkhorn_iterations must be an integer >= 1"):
        sinkhorn_knopp(torch.randn(4, 3), iterations=0)


def test_mocov3_rejects_mismatched_queries_and_keys():
    loss_fn = MoCoV3Loss()
    q, k = torch.randn(4, 8), torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"same shape.*q1 \(4, 8\) and k1 \(4, 6\)"):
        loss_fn(q, q, torch.randn(4, 6), torch.randn(4, 6))
    with pytest.raises(ValueError, match=r"2-D \[batch, dim\].*flatten\(1\)"):
        loss_fn(q.view(4, 2, 4), q.view(4, 2, 4), k, k)
    with pytest.raises(ValueError, match="empty batch"):
        loss_fn(*(torch.randn(0, 8) for _ in range(4)))
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        MoCoV3Loss(temperature=0.0)


def test_mae_rejects_bad_masks_and_shapes():
    loss_fn = MAELoss()
    pred, target = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    with pytest.raises(ValueError, match=r"mask must be a bool tensor \[N, L\].*\.bool\(\)"):
        loss_fn(pred, target, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"mask \(2, 5\) must be \[N, L\] = \(2, 4\)"):
        loss_fn(pred, target, torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"no masked patch.*mask at least one"):
        loss_fn(pred, target, torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"same shape \[N, L, P\]; patchify"):
        loss_fn(pred, torch.randn(2, 4, 5), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"pred must be 3-D \[N, L, P\]"):
        loss_fn(pred[0], target[0], torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="norm_pix_loss needs at least 2 values per patch"):
        loss_fn(pred[..., :1], target[..., :1], torch.ones(2, 4, dtype=torch.bool))


def test_ijepa_rejects_bad_input():
    with pytest.raises(ValueError, match=r"same shape \[..., D\]; select the target encoder"):
        IJEPALoss()(torch.randn(2, 3, 4), torch.randn(2, 3, 5))
    with pytest.raises(ValueError, match="floating-point tensor"):
        IJEPALoss()(torch.randn(2, 4), torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"loss_type must be 'l2'.*or 'smooth_l1'"):
        IJEPALoss(loss_type="l1")


def test_half_precision_inputs_compute_in_float32():
    s = [torch.randn(4, 8).half() for _ in range(3)]
    assert DINOLoss(8)(s, s[:2]).dtype == torch.float32
    assert SwAVLoss()(s[:2], s[2:]).dtype == torch.float32
    assert MoCoV3Loss()(*s, s[0]).dtype == torch.float32


def test_gradcheck_multi_view_losses():
    def r(seed, *shape):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    s, t = (r(0, 3, 4), r(1, 3, 4), r(2, 3, 4)), [r(3, 3, 4).detach(), r(4, 3, 4).detach()]
    dino = DINOLoss(4, center_momentum=1.0).double()
    assert torch.autograd.gradcheck(lambda *v: dino(list(v), t), s)
    # The codes are computed without gradient, so check through the low-resolution views only.
    assert torch.autograd.gradcheck(lambda *v: SwAVLoss()(t, list(v)), s)
    assert torch.autograd.gradcheck(lambda a, b: MoCoV3Loss()(a, b, t[0], t[1]), s[:2])
    mask = torch.tensor([[True, False], [True, True], [False, True]])
    pred, target = r(5, 3, 2, 4), r(6, 3, 2, 4).detach()
    assert torch.autograd.gradcheck(lambda p: MAELoss()(p, target, mask), (pred,))
    assert torch.autograd.gradcheck(lambda p: IJEPALoss("smooth_l1")(p, target), (pred,))
    ibot = iBOTPatchLoss(4, center_momentum=1.0).double()
    sp, tp = r(7, 3, 2, 4), [r(8, 3, 2, 4).detach()]
    assert torch.autograd.gradcheck(lambda p: ibot([p], tp, [mask]), (sp,))
