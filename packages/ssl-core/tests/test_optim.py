import functools
import math

import pytest
import torch
from torch import nn

from ssl_core.optim import (
    LARS,
    LinearWarmupCosineAnnealingLR,
    build_optimizers,
    optimizer_names,
    parameter_groups,
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
    assert b.optimizer.defaults["lr"] == 1e-3 and b.optimizer.defaults["weight_decay"] == 0.01
    assert (
        type(b.scheduler) is torch.optim.lr_scheduler.CosineAnnealingLR and b.scheduler.T_max == 37
    )


def test_false_means_no_optimizer():
    assert parse_optim(False) == []


def test_the_form_every_method_config_uses():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(
        {
            "optimizer": {"type": "LARS", "lr": 0.4, "weight_decay": 1e-5},
            "scheduler": {"type": "LinearWarmupCosineAnnealingLR", "warmup_steps": 0.1},
            "interval": "step",
        }
    )
    (b,) = build(cfg, total_steps=50)
    assert isinstance(b.optimizer, LARS) and b.optimizer.param_groups[0]["weight_decay"] == 1e-5
    assert b.scheduler.warmup_steps == 5 and b.scheduler.max_steps == 50


def test_a_callable_factory_is_the_hydra_partial_form():
    """A Hydra node with _partial_: true is instantiated into a partial; that is the factory."""
    hydra_utils = pytest.importorskip("hydra.utils")
    node = {
        "optimizer": {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.3},
        "scheduler": {
            "_target_": "ssl_core.optim.LinearWarmupCosineAnnealingLR",
            "_partial_": True,
            "warmup_steps": 2,
        },
        "interval": "epoch",
    }
    (b,) = build(hydra_utils.instantiate(node), total_steps=100, total_epochs=7)
    assert type(b.optimizer) is torch.optim.SGD and b.optimizer.defaults["lr"] == 0.3
    assert b.scheduler.warmup_steps == 2 and b.scheduler.max_steps == 7  # epochs: the interval
    (b,) = build({"optimizer": functools.partial(torch.optim.Adam, lr=0.01), "scheduler": None})
    assert type(b.optimizer) is torch.optim.Adam and b.scheduler is None


def test_an_uninstantiated_hydra_node_says_how_to_build_it():
    with pytest.raises(TypeError, match=r"uninstantiated Hydra node.*hydra.utils.instantiate"):
        parse_optim({"optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1}})


@pytest.mark.parametrize(
    "optim,match",
    [
        ("SGD", r"optim must be None, False or a dict"),
        ({"optimizer": "SGD"}, r"give \{'type': NAME"),
        ({"optimizer": {"lr": 0.1}}, r"needs a 'type'"),
        ({"interval": "batch"}, r"interval must be 'step' or 'epoch'"),
    ],
)
def test_other_forms_are_refused_with_the_one_form(optim, match):
    with pytest.raises((TypeError, ValueError), match=match):
        parse_optim(optim)


def test_epoch_interval_counts_epochs():
    (b,) = build({"scheduler": {"type": "CosineAnnealingLR"}, "interval": "epoch"}, 100, 7)
    assert b.scheduler.T_max == 7


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(
        ValueError, match=r"Unknown optimizer 'SGDD'. Valid names: .*AdamW.*LARS.*SGD"
    ):
        parse_optim({"optimizer": {"type": "SGDD"}})


def test_unknown_scheduler_lists_valid_names():
    with pytest.raises(
        ValueError,
        match=r"Unknown scheduler 'Cosine'. Valid names: .*CosineAnnealingLR.*LinearWarmup",
    ):
        parse_optim({"scheduler": {"type": "Cosine"}})
    assert "LinearWarmupCosineAnnealingLR" in scheduler_names() and "LARS" in optimizer_names()


def test_unknown_spec_key_lists_valid_keys():
    with pytest.raises(ValueError, match=r"unknown keys \['lr'\]; valid keys: optimizer"):
        parse_optim({"optimizer": {"type": "SGD"}, "lr": 0.1})
    for removed in ("modules", "frequency", "monitor"):
        with pytest.raises(ValueError, match="unknown keys"):
            parse_optim({removed: 1})


def test_unknown_length_asks_for_it():
    with pytest.raises(ValueError, match=r"Cannot infer the scheduler's T_max.*max_epochs"):
        build({"interval": "epoch"}, total_steps=10, total_epochs=None)


def test_frozen_parameters_are_skipped():
    module = net()
    module["backbone"].requires_grad_(False)
    (b,) = build(None, module=module)
    got = {id(p) for g in b.optimizer.param_groups for p in g["params"]}
    assert got == {id(p) for p in module["predictor"].parameters()}


# ----------------------------------------------------------------------------- parameter groups


def test_biases_and_norm_weights_get_no_weight_decay_by_default():
    module = net()  # Linear(3, 4) + BatchNorm1d(4) + Linear(4, 2)
    (b,) = build({"optimizer": {"type": "AdamW", "weight_decay": 0.5}}, module=module)
    decay, no_decay = b.optimizer.param_groups
    one_dim = {id(p) for p in module.parameters() if p.ndim <= 1}
    assert {id(p) for p in no_decay["params"]} == one_dim and len(one_dim) == 4
    assert {id(p) for p in decay["params"]} == {id(p) for p in module.parameters() if p.ndim > 1}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.5


def test_weight_decay_step_matches_the_formula():
    """SGD, zero gradient: decayed weights shrink by (1 - lr * wd), biases and BN stay put."""
    for exclude in (True, False):
        module = net()
        before = {n: p.detach().clone() for n, p in module.named_parameters()}
        optim = {
            "optimizer": {"type": "SGD", "lr": 0.5, "weight_decay": 0.2},
            "scheduler": None,
            "exclude_bias_and_norm": exclude,
        }
        (b,) = build(optim, module=module)
        for p in module.parameters():
            p.grad = torch.zeros_like(p)
        b.optimizer.step()
        for name, p in module.named_parameters():
            decayed = p.ndim > 1 or not exclude
            expected = before[name] * (1 - 0.5 * 0.2) if decayed else before[name]
            torch.testing.assert_close(p.detach(), expected, msg=name)


def test_lars_adapts_biases_only_when_exclusion_is_off():
    for exclude in (True, False):
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        ref = [p.detach().clone() for p in model.parameters()]
        optim = {
            "optimizer": {"type": "LARS", "lr": 0.5, "momentum": 0.9, "weight_decay": 0.1},
            "scheduler": None,
            "exclude_bias_and_norm": exclude,
        }
        (b,) = build(optim, module=model)
        model(torch.randn(8, 3)).pow(2).sum().backward()
        grads = {id(p): p.grad.clone() for p in model.parameters()}
        b.optimizer.step()
        for p, r in zip(model.parameters(), ref, strict=True):
            want, _ = lars_reference(
                r, grads[id(p)], 0.5, 0.9, 0.1, 0.001, None, exclude=exclude and r.ndim <= 1
            )
            torch.testing.assert_close(p.detach(), want)


def test_parameter_groups_without_exclusion_is_one_group():
    lin = nn.Linear(3, 2)
    assert [len(g["params"]) for g in parameter_groups(lin.named_parameters(), False)] == [2]
    assert parameter_groups(nn.Linear(3, 2).requires_grad_(False).named_parameters()) == []
