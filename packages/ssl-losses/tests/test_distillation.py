"""DINO, iBOT patch and SwAV losses against float64 loop references of the official code."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_losses import DINOLoss, SwAVLoss, iBOTPatchLoss, sinkhorn_knopp

# ---------------------------------------------------------------- references (official loops)


def ref_dino(student, teacher, center, temp, student_temp=0.1):
    """facebookresearch/dino main_dino.py DINOLoss.forward, one process, views as lists."""
    student_out = [s / student_temp for s in student]
    teacher_out = [F.softmax((t - center) / temp, dim=-1).detach() for t in teacher]
    total_loss, n_loss_terms = 0.0, 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
            total_loss += loss.mean()
            n_loss_terms += 1
    return total_loss / n_loss_terms


def ref_center(center, teacher, momentum=0.9):
    batch_center = torch.cat(teacher).sum(0, keepdim=True) / sum(len(t) for t in teacher)
    return center * momentum + batch_center * (1 - momentum)


def ref_ibot_patch(student, teacher, masks, center2, temp, student_temp=0.1):
    """bytedance/ibot main_ibot.py iBOTLoss.forward, the patch (loss2) part."""
    total, terms = 0.0, 0
    for q in range(len(teacher)):
        tq = F.softmax((teacher[q] - center2) / temp, dim=-1).detach()
        loss2 = torch.sum(-tq * F.log_softmax(student[q] / student_temp, dim=-1), dim=-1)
        mask = masks[q].float()
        loss2 = torch.sum(loss2 * mask, dim=-1) / mask.sum(dim=-1).clamp(min=1.0)
        total += loss2.mean()
        terms += 1
    return total / terms


def ref_sinkhorn(out, iterations=3, epsilon=0.05):
    """facebookresearch/swav main_swav.py distributed_sinkhorn, world size 1 (no shift)."""
    q = torch.exp(out / epsilon).t()
    b, k = q.shape[1], q.shape[0]
    q = q / torch.sum(q)
    for _ in range(iterations):
        q = q / torch.sum(q, dim=1, keepdim=True)
        q = q / k
        q = q / torch.sum(q, dim=0, keepdim=True)
        q = q / b
    return (q * b).t()


def ref_swav(high, low, queue=None, temperature=0.1, iterations=3, epsilon=0.05):
    """The official SwAV training loop's loss, crops_for_assign = the high-resolution views."""
    output = high + low
    bs, loss = high[0].shape[0], 0.0
    for i in range(len(high)):
        out = output[i].detach()
        if queue is not None:
            out = torch.cat([queue[i], out])
        q = ref_sinkhorn(out, iterations, epsilon)[-bs:]
        subloss = 0.0
        for v in np.delete(np.arange(len(output)), i):
            x = output[v] / temperature
            subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
        loss += subloss / (len(output) - 1)
    return loss / len(high)


def _views(seed, count, *shape, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return [
        (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).requires_grad_()
        for _ in range(count)
    ]


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True, materialize_grads=True)


def _assert_same(ours, ref, inputs):
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    for got, want in zip(_grads(ours, inputs), _grads(ref, inputs), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- DINO


@pytest.mark.parametrize("n_teacher,n_student", [(2, 8), (2, 2), (1, 3), (3, 5)])
def test_dino_value_and_gradient_match_official_loop(n_teacher, n_student):
    student = _views(0, n_student, 4, 7, scale=3.0)
    teacher = _views(1, n_teacher, 4, 7, scale=3.0)
    loss_fn = DINOLoss(7, student_temp=0.2).double()
    loss_fn.center.copy_(torch.randn(1, 7, dtype=torch.float64))
    center = loss_fn.center.clone()
    ours = loss_fn(student, teacher)
    ref = ref_dino(student, teacher, center, 0.04, student_temp=0.2)
    _assert_same(ours, ref, student)
    # Teacher logits get no gradient: the teacher is an EMA copy.
    assert not any(t.grad is not None for t in teacher)


def test_dino_center_is_an_ema_of_the_teacher_batch_mean_used_from_the_next_call():
    student, teacher = _views(2, 5, 6, 9), _views(3, 2, 6, 9, scale=2.0)
    loss_fn = DINOLoss(9, center_momentum=0.7).double()
    first = loss_fn(student, teacher)
    center_1 = ref_center(torch.zeros(1, 9, dtype=torch.float64), teacher, 0.7)
    torch.testing.assert_close(loss_fn.center, center_1, rtol=1e-12, atol=1e-14)
    assert first.item() == pytest.approx(ref_dino(student, teacher, 0.0, 0.04).item(), rel=1e-10)
    teacher_2 = _views(4, 2, 6, 9, scale=2.0)
    second = loss_fn(student, teacher_2)
    assert second.item() == pytest.approx(
        ref_dino(student, teacher_2, center_1, 0.04).item(), rel=1e-10
    )
    torch.testing.assert_close(
        loss_fn.center, ref_center(center_1, teacher_2, 0.7), rtol=1e-12, atol=1e-14
    )
    assert "center" in loss_fn.state_dict()  # checkpointed with the module


@pytest.mark.parametrize("warmup_epochs", [0, 1, 3, 30])
def test_teacher_temperature_schedule_is_the_official_linspace(warmup_epochs):
    nepochs = 40
    official = np.concatenate(
        (np.linspace(0.04, 0.07, warmup_epochs), np.ones(nepochs - warmup_epochs) * 0.07)
    )
    for cls in (DINOLoss, iBOTPatchLoss):
        loss_fn = cls(
            4, teacher_temp=0.07, warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=warmup_epochs
        )
        got = [loss_fn.teacher_temperature(e) for e in range(nepochs)]
        np.testing.assert_allclose(got, official, rtol=1e-12)


def test_dino_uses_the_epochs_teacher_temperature():
    student, teacher = _views(5, 4, 3, 6), _views(6, 2, 3, 6)
    loss_fn = DINOLoss(
        6,
        teacher_temp=0.07,
        warmup_teacher_temp=0.02,
        warmup_teacher_temp_epochs=5,
        center_momentum=1.0,
    ).double()
    for epoch in (0, 2, 9):
        temp = loss_fn.teacher_temperature(epoch)
        got = loss_fn(student, teacher, epoch=epoch).item()
        assert got == pytest.approx(ref_dino(student, teacher, 0.0, temp).item(), rel=1e-10)


def test_multi_crop_pairs_skip_the_same_view():
    """student_out[i] is never supervised by teacher_out[i]: its gradient ignores that teacher."""
    student, teacher = _views(7, 4, 3, 5), _views(8, 2, 3, 5)
    loss_fn = DINOLoss(5, center_momentum=1.0).double()
    g0 = _grads(loss_fn(student, teacher), student)
    changed = [teacher[0] + 5.0 * torch.randn_like(teacher[0]), teacher[1]]
    g1 = _grads(loss_fn(student, changed), student)
    torch.testing.assert_close(g1[0], g0[0], rtol=0, atol=1e-15)  # only teacher 1 supervises it
    assert (g1[1] - g0[1]).abs().max() > 1e-3  # view 1 is supervised by teacher 0
    # With one teacher view and one student view there is no pair of different views.
    with pytest.raises(ValueError, match="at least one other view"):
        loss_fn(student[:1], teacher[:1])


# ---------------------------------------------------------------- iBOT


def test_ibot_patch_value_gradient_and_center_match_official():
    student, teacher = _views(9, 2, 3, 5, 6, scale=2.0), _views(10, 2, 3, 5, 6, scale=2.0)
    g = torch.Generator().manual_seed(0)
    masks = [torch.rand(3, 5, generator=g) < 0.4 for _ in range(2)]
    masks[0][1] = False  # a sample without masked tokens counts as 0 in the mean
    loss_fn = iBOTPatchLoss(6, center_momentum=0.8).double()
    loss_fn.center.copy_(torch.randn(1, 1, 6, dtype=torch.float64))
    center = loss_fn.center.clone()
    ours = loss_fn(student, teacher, masks)
    _assert_same(ours, ref_ibot_patch(student, teacher, masks, center, 0.04), student)
    token_mean = torch.cat(teacher).mean(1).sum(0, keepdim=True) / 6  # official update_center
    expected = center * 0.8 + token_mean.unsqueeze(0) * 0.2
    torch.testing.assert_close(loss_fn.center, expected.detach(), rtol=1e-12, atol=1e-14)


def test_ibot_patch_loss_only_on_masked_tokens():
    student, teacher = _views(11, 1, 2, 4, 3), _views(12, 1, 2, 4, 3)
    masks = [torch.tensor([[True, False, True, False], [False, False, False, True]])]
    loss_fn = iBOTPatchLoss(3, center_momentum=1.0).double()
    (grad,) = _grads(loss_fn(student, teacher, masks), student)
    assert grad[~masks[0]].abs().max() == 0  # unmasked tokens get no gradient
    assert grad[masks[0]].abs().min() > 0


# ---------------------------------------------------------------- SwAV


@pytest.mark.parametrize("iterations", [1, 3, 10])
def test_sinkhorn_matches_official_and_its_marginals(iterations):
    g = torch.Generator().manual_seed(iterations)
    scores = F.normalize(torch.randn(12, 5, generator=g, dtype=torch.float64), dim=1)
    codes = sinkhorn_knopp(scores, iterations, 0.05)
    torch.testing.assert_close(codes, ref_sinkhorn(scores, iterations), rtol=1e-10, atol=1e-14)
    # Each sample's code is a distribution over prototypes (the last step normalises samples).
    torch.testing.assert_close(codes.sum(1), torch.ones(12, dtype=torch.float64))
    # Each prototype receives B/K samples' worth of weight, approached with more iterations.
    long = sinkhorn_knopp(scores, 2000, 0.05)
    torch.testing.assert_close(long.sum(0), torch.full((5,), 12 / 5, dtype=torch.float64))


def test_sinkhorn_shift_keeps_unnormalised_scores_finite():
    scores = torch.tensor([[10.0, 9.0], [9.0, 10.0], [8.0, 10.0]])  # exp(200) overflows float32
    assert not torch.isfinite(ref_sinkhorn(scores)).all()
    codes = sinkhorn_knopp(scores)
    assert torch.isfinite(codes).all()
    torch.testing.assert_close(codes, ref_sinkhorn(scores.double() - 10).float())


@pytest.mark.parametrize("n_high,n_low", [(2, 6), (2, 0), (1, 2), (3, 1)])
def test_swav_value_and_gradient_match_official_loop(n_high, n_low):
    high = _views(13, n_high, 8, 6, scale=0.5)
    low = _views(14, n_low, 8, 6, scale=0.5)
    ours = SwAVLoss()(high, low)
    _assert_same(ours, ref_swav(high, low), high + low)


def test_swav_with_queue_matches_official_loop():
    high, low = _views(15, 2, 4, 6, scale=0.5), _views(16, 3, 4, 6, scale=0.5)
    queue = [t.detach() for t in _views(17, 2, 10, 6, scale=0.5)]
    ours = SwAVLoss(temperature=0.2, sinkhorn_iterations=4, sinkhorn_epsilon=0.1)(high, low, queue)
    ref = ref_swav(high, low, queue, temperature=0.2, iterations=4, epsilon=0.1)
    _assert_same(ours, ref, high + low)
    assert abs(ours.item() - SwAVLoss(0.2, 4, 0.1)(high, low).item()) > 1e-6  # queue is used


def test_swav_codes_come_from_high_resolution_views_only():
    a, b = _views(18, 2, 4, 6)
    codes = sinkhorn_knopp(a.detach())
    expected = -(codes * F.log_softmax(b / 0.1, dim=1)).sum(1).mean()
    loss_fn = SwAVLoss()
    got = loss_fn([a], [b])
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    assert abs(loss_fn([b], [a]).item() - got.item()) > 1e-3  # the low view made no code
