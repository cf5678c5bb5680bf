import math

import pytest
import torch
from torch import nn

from ssl_core import TeacherStudentWrapper, ema_coefficient


def student():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


@pytest.mark.parametrize("progress", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_schedule_values(progress):
    base, final = 0.99, 1.0
    expected = final - (final - base) * (math.cos(math.pi * progress) + 1) / 2
    assert ema_coefficient(progress, base, final) == pytest.approx(expected)
    w = TeacherStudentWrapper(student(), base, final)
    assert w.update_teacher(progress) == pytest.approx(expected)
    assert w.ema_coefficient.item() == pytest.approx(expected)


def test_schedule_endpoints():
    assert ema_coefficient(0.0, 0.996, 1.0) == pytest.approx(0.996)
    assert ema_coefficient(1.0, 0.996, 1.0) == pytest.approx(1.0)
    assert ema_coefficient(0.5, 0.9, 1.0) == pytest.approx(0.95)


def test_update_applies_ema_to_parameters_and_buffers():
    w = TeacherStudentWrapper(student(), base_ema_coefficient=0.9, final_ema_coefficient=1.0)
    w.train()
    w(torch.randn(8, 3))  # updates the student's BN running stats
    with torch.no_grad():
        for p in w.student.parameters():
            p.add_(1.0)
    teacher_before = {k: v.clone() for k, v in w.teacher.state_dict().items()}
    student_now = {k: v.clone() for k, v in w.student.state_dict().items()}
    c = w.update_teacher(0.0)
    assert c == pytest.approx(0.9)
    for key, t in w.teacher.state_dict().items():
        if t.is_floating_point():
            torch.testing.assert_close(t, 0.9 * teacher_before[key] + 0.1 * student_now[key])
        else:
            assert torch.equal(t, student_now[key])  # num_batches_tracked copied


def test_teacher_gets_no_gradients_and_runs_without_graph():
    w = TeacherStudentWrapper(student())
    assert all(not p.requires_grad for p in w.teacher.parameters())
    assert all(p.requires_grad for p in w.student.parameters())
    x = torch.randn(5, 3)
    out_t = w.forward_teacher(x)
    assert not out_t.requires_grad and out_t.grad_fn is None
    (w(x).sum() + w.forward_teacher(x).sum()).backward()
    assert all(p.grad is None for p in w.teacher.parameters())


def test_forward_is_student():
    w = TeacherStudentWrapper(student())
    w.eval()
    x = torch.randn(5, 3)
    torch.testing.assert_close(w(x), w.student(x))
    torch.testing.assert_close(w.forward_student(x), w.student(x))


def test_teacher_follows_the_wrappers_mode():
    w = TeacherStudentWrapper(student())
    w.train()
    assert w.student.training and w.teacher.training
    w.eval()
    assert not w.student.training and not w.teacher.training


def test_teacher_in_training_uses_batch_statistics_without_gradients():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    w = TeacherStudentWrapper(net)
    w.train()
    x = torch.randn(16, 3) * 5 + 2
    out = w.forward_teacher(x)
    assert out.grad_fn is None
    # train-mode BatchNorm standardises over the batch: per-feature mean 0, biased var 1
    torch.testing.assert_close(out.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(0, unbiased=False), torch.ones(4), atol=1e-3, rtol=0)


def test_coefficient_one_keeps_initial_student():
    w = TeacherStudentWrapper(student(), base_ema_coefficient=1.0, final_ema_coefficient=1.0)
    initial = {k: v.clone() for k, v in w.student.state_dict().items()}
    opt = torch.optim.SGD(w.parameters(), lr=0.5)
    for progress in (0.0, 0.5, 1.0):
        w(torch.randn(6, 3)).sum().backward()
        opt.step()
        w.update_teacher(progress)
    for key, value in w.teacher.state_dict().items():
        assert torch.equal(value, initial[key])
    assert not torch.equal(w.student[0].weight, initial["0.weight"])


def test_teacher_in_state_dict_and_round_trip():
    w = TeacherStudentWrapper(student(), 0.5)
    with torch.no_grad():
        for p in w.student.parameters():
            p.mul_(2)
    w.update_teacher(0.0)
    state = w.state_dict()
    assert any(k.startswith("teacher.") for k in state) and "ema_coefficient" in state
    w2 = TeacherStudentWrapper(student(), 0.5)
    w2.load_state_dict(state)
    for a, b in zip(w.teacher.parameters(), w2.teacher.parameters(), strict=True):
        assert torch.equal(a, b)


def test_invalid_coefficient():
    with pytest.raises(ValueError, match="base_ema_coefficient must be in \\[0, 1\\]"):
        TeacherStudentWrapper(student(), base_ema_coefficient=1.5)
