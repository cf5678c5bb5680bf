import functools
import math

import pytest
import torch
from torch import nn

from ssl_core.optim import (
    LARS,
    LinearWarmupCosineAnnealingLR,
    MultiOptimizer,
    assign_parameters,
    build_optimizers,
    optimizer_names,
    parse_optim,
    scheduler_names,
)


def net():
    torch.manual_seed(0)
    return nn.ModuleDict(
        {
            "backbone": nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)),
            "predictor": nn.Linear(4, 2),
        }
    )


# ----------------------------------------------------------------------------- LARS


def lars_reference(p, g, lr, momentum, wd, eta, buf, exclude):
    if not exclude:
        g = g + wd * p
        pn, gn = p.norm(), g.norm()
        if pn > 0 and gn > 0:
            g = g * (eta * pn / gn)
    buf = g.clone() if buf is None else momentum * buf + g
    return p - lr * buf, buf


def test_lars_matches_reference_and_excludes_bias_and_norm():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ref = [p.detach().clone() for p in model.parameters()]
    bufs = [None] * len(ref)
    opt = LARS(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1, eta=0.02)
    x = torch.randn(8, 3)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        grads = [p.grad.clone() for p in model.parameters()]
        opt.step()
        for i, (p, g) in enumerate(zip(ref, grads, strict=True)):
            ref[i], bufs[i] = lars_reference(
                p, g, 0.5, 0.9, 0.1, 0.02, bufs[i], exclude=p.ndim <= 1
            )
        for p, r in zip(model.parameters(), ref, strict=True):
            torch.testing.assert_close(p.detach(), r)


def test_lars_bias_update_is_plain_momentum_sgd():
    lin = nn.Linear(2, 1)
    bias0 = lin.bias.detach().clone()
    opt = LARS(lin.parameters(), lr=0.1, momentum=0.0, weight_decay=5.0, eta=1e-3)
    lin(torch.ones(1, 2)).sum().backward()
    opt.step()
    torch.testing.assert_close(lin.bias.detach(), bias0 - 0.1 * torch.ones(1))  # grad of bias = 1


def test_lars_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="momentum"):
        LARS(nn.Linear(2, 2).parameters(), momentum=1.5)


# ----------------------------------------------------------------------------- schedules


def expected_lr(t, base, warmup, total, start=0.0, eta_min=0.0):
    if t < warmup:
        return base * (start + (1 - start) * t / warmup)
    if t >= total:
        return eta_min
    return eta_min + (base - eta_min) * 0.5 * (
        1 + math.cos(math.pi * (t - warmup) / (total - warmup))
    )


@pytest.mark.parametrize(
    ("warmup", "start", "eta_min"), [(3, 0.0, 0.0), (0, 0.0, 0.01), (4, 0.1, 0.0)]
)
def test_linear_warmup_cosine_values(warmup, start, eta_min):
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=2.0)
    sched = LinearWarmupCosineAnnealingLR(
        opt, warmup, 10, warmup_start_factor=start, eta_min=eta_min
    )
    for t in range(12):
        assert opt.param_groups[0]["lr"] == pytest.approx(
            expected_lr(t, 2.0, warmup, 10, start, eta_min)
        )
        opt.step()
        sched.step()


def test_scheduler_state_round_trip():
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    sched = LinearWarmupCosineAnnealingLR(opt, 2, 8)
    for _ in range(5):
        sched.step()
    opt2 = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    sched2 = LinearWarmupCosineAnnealingLR(opt2, 2, 8)
    sched2.load_state_dict(sched.state_dict())
    sched2.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


def test_warmup_longer_than_run_is_rejected():
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    with pytest.raises(ValueError, match=r"max_steps .* must exceed warmup_steps"):
        LinearWarmupCosineAnnealingLR(opt, 10, 10)


# ----------------------------------------------------------------------------- spec parsing


def build(optim, total_steps=100, total_epochs=5, module=None):
    return build_optimizers(module or net(), parse_optim(optim), total_steps, total_epochs)


def test_default_is_adamw_with_cosine_over_all_steps():
    (b,) = build(None, total_steps=37)
    assert type(b.optimizer) is torch.optim.AdamW and b.spec.interval == "step"
    assert (
        type(b.scheduler) is torch.optim.lr_scheduler.CosineAnnealingLR and b.scheduler.T_max == 37
    )


def test_false_means_no_optimizer():
    assert parse_optim(False) == []


@pytest.mark.parametrize(
    "optim",
    [
        "SGD",
        "sgd",
        torch.optim.SGD,
        functools.partial(torch.optim.SGD, lr=0.3),
        {"type": "SGD", "lr": 0.3},
        {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.3},
        {"optimizer": {"type": "torch.optim.SGD", "lr": 0.3}},
    ],
)
def test_optimizer_forms(optim):
    (b,) = build(optim)
    assert type(b.optimizer) is torch.optim.SGD
    if not isinstance(optim, str) and optim is not torch.optim.SGD:
        assert b.optimizer.param_groups[0]["lr"] == 0.3


def test_hydra_dictconfig_node():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(
        {
            "optimizer": {"_target_": "ssl_core.optim.LARS", "lr": 0.4, "weight_decay": 1e-5},
            "scheduler": {"type": "LinearWarmupCosineAnnealingLR", "warmup_steps": 0.1},
            "interval": "step",
        }
    )
    (b,) = build(cfg, total_steps=50)
    assert isinstance(b.optimizer, LARS) and b.optimizer.param_groups[0]["weight_decay"] == 1e-5
    assert b.scheduler.warmup_steps == 5 and b.scheduler.max_steps == 50


def test_epoch_interval_counts_epochs():
    (b,) = build(
        {"optimizer": "SGD", "scheduler": "CosineAnnealingLR", "interval": "epoch"}, 100, 7
    )
    assert b.scheduler.T_max == 7


def test_frequency_divides_length():
    (b,) = build({"optimizer": "SGD", "frequency": 10}, 100, 7)
    assert b.scheduler.T_max == 10


def test_scheduler_none_means_constant():
    (b,) = build({"optimizer": "SGD", "scheduler": None})
    assert b.scheduler is None
    (b,) = build({"optimizer": "SGD", "scheduler": "constant"})
    assert b.scheduler is None


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"Unknown optimizer 'SGDD'. Valid names: .*AdamW.*LARS.*SGD"
    ):
        parse_optim({"optimizer": "SGDD"})


def test_unknown_scheduler_lists_valid_names():
    with pytest.raises(
        ValueError,
        match=r"Unknown scheduler 'Cosine'. Valid names: .*CosineAnnealingLR.*LinearWarmup",
    ):
        parse_optim({"optimizer": "SGD", "scheduler": "Cosine"})
    assert "LinearWarmupCosineAnnealingLR" in scheduler_names() and "LARS" in optimizer_names()


def test_unknown_spec_key_lists_valid_keys():
    with pytest.raises(ValueError, match="unknown keys \\['lr'\\]; valid keys: optimizer"):
        parse_optim({"optimizer": "SGD", "lr": 0.1})


def test_regex_matching_no_parameters():
    with pytest.raises(
        ValueError, match=r"'projector' matches no trainable parameter.*'backbone', 'predictor'"
    ):
        build({"a": {"modules": "projector", "optimizer": "SGD"}, "b": {"optimizer": "SGD"}})


def test_unknown_length_asks_for_it():
    with pytest.raises(ValueError, match=r"cannot infer the scheduler's T_max.*max_epochs"):
        build({"optimizer": "SGD", "interval": "epoch"}, total_steps=10, total_epochs=None)


def test_regex_assignment_first_match_and_catch_all():
    module = net()
    specs = parse_optim(
        [
            {"modules": "predictor", "optimizer": "SGD"},
            {"optimizer": "AdamW"},
            {"modules": "backbone\\.1", "optimizer": "SGD"},
        ]
    )
    groups = assign_parameters(module, specs)
    names = [sorted(n for n, _ in g) for g in groups]
    assert names[0] == ["predictor.bias", "predictor.weight"]
    assert names[2] == ["backbone.1.bias", "backbone.1.weight"]
    assert names[1] == ["backbone.0.bias", "backbone.0.weight"]


def test_unselected_parameters_warn():
    with pytest.warns(UserWarning, match="selected by no optimiser"):
        build({"optimizer": "SGD", "modules": "predictor"})


def test_frozen_parameters_are_skipped():
    module = net()
    module["backbone"].requires_grad_(False)
    (b,) = build(None, module=module)
    got = {id(p) for g in b.optimizer.param_groups for p in g["params"]}
    assert got == {id(p) for p in module["predictor"].parameters()}


def test_multi_optimizer_state_dict_round_trip_and_routing():
    module = net()
    built = build(
        {
            "a": {"modules": "backbone", "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}},
            "b": {"modules": "predictor", "optimizer": "Adam"},
        },
        module=module,
    )
    multi = MultiOptimizer([b.optimizer for b in built], names=["a", "b"])
    assert len(multi.param_groups) == 2
    module["predictor"](module["backbone"](torch.randn(4, 3))).sum().backward()
    multi.step()
    assert len(multi.state) == 6  # 4 momentum buffers + 2 Adam states
    w = module["predictor"].weight
    multi.state[w] = {"step": torch.tensor(7.0)}
    assert built[1].optimizer.state[w]["step"] == 7
    copy_built = build(
        {
            "a": {"modules": "backbone", "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}},
            "b": {"modules": "predictor", "optimizer": "Adam"},
        },
        module=module,
    )
    other = MultiOptimizer([b.optimizer for b in copy_built])
    other.load_state_dict(multi.state_dict())
    assert other.optimizers[1].state_dict()["state"][0]["step"] == 7


def test_multi_optimizer_rejects_shared_parameters():
    lin = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="shared by two optimisers"):
        MultiOptimizer([torch.optim.SGD(lin.parameters()), torch.optim.SGD(lin.parameters())])
