"""DINO, MoCo v3, SwAV and SimSiam forwards: what each passes to its loss (pairing, order, stop
gradients), multi-crop local views, prototype handling, and the errors naming what is missing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ssl_forwards
from ssl_core import TeacherStudentWrapper
from ssl_core.backbone import MLP, DINOHead, from_timm
from ssl_data import fold_views


class Recorder:
    """A stand-in loss: records its arguments and returns a differentiable scalar of them."""

    def __init__(self) -> None:
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.args, self.kwargs = args, kwargs
        tensors = [t for a in args if a is not None for t in (a if isinstance(a, list) else [a])]
        return sum((t**2).mean() for t in tensors)


def flat(n: int = 6, views: int = 2, dim: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen) * 7 + 3
    batch = {
        "image": torch.randn(n * views, dim, generator=gen),
        "sample_idx": idx.repeat(views),
        "label": torch.arange(n).repeat(views),
    }
    perm = torch.randperm(n * views, generator=gen)
    return {k: v[perm] for k, v in batch.items()}


def dino_module(epoch: int = 0, **heads: Any) -> SimpleNamespace:
    torch.manual_seed(0)
    head = DINOHead(8, out_dim=12, hidden=16, bottleneck=4, **heads)
    return SimpleNamespace(
        backbone=TeacherStudentWrapper(nn.Linear(5, 8)),
        projector=TeacherStudentWrapper(head),
        dino_loss=Recorder(),
        current_epoch=epoch,
    )


def perturb_teacher(wrapper: TeacherStudentWrapper) -> None:
    with torch.no_grad():
        for p in wrapper.teacher.parameters():
            p.add_(0.1 * torch.randn_like(p))


def test_dino_pairs_student_views_with_the_teacher_views() -> None:
    module = dino_module(epoch=3)
    perturb_teacher(module.backbone)  # teacher != student, so a swap would show
    batch = flat()
    gen = torch.Generator().manual_seed(1)
    n = 6
    globals_ = fold_views(batch["image"], batch["sample_idx"])
    local_idx = torch.unique(batch["sample_idx"]).repeat(3)
    local_perm = torch.randperm(3 * n, generator=gen)
    batch["local_image"] = torch.randn(3 * n, 5, generator=gen)[local_perm]
    batch["local_sample_idx"] = local_idx[local_perm]
    out = ssl_forwards.dino_forward(module, batch, "train")

    student, teacher = module.dino_loss.args
    assert module.dino_loss.kwargs == {"epoch": 3}
    assert len(teacher) == 2 and len(student) == 5
    s_net = lambda x: module.projector.student(module.backbone.student(x), epoch=3)  # noqa: E731
    t_net = lambda x: module.projector.teacher(module.backbone.teacher(x))  # noqa: E731
    locals_ = fold_views(batch["local_image"], batch["local_sample_idx"])
    for i in range(2):
        torch.testing.assert_close(student[i], s_net(globals_[i]))
        torch.testing.assert_close(teacher[i], t_net(globals_[i]))
        assert not teacher[i].requires_grad
    for j in range(3):
        torch.testing.assert_close(student[2 + j], s_net(locals_[j]))
    torch.testing.assert_close(out["embedding"], module.backbone.teacher(batch["image"]))
    assert torch.equal(out["label"], batch["label"])
    out["loss"].backward()
    assert module.backbone.student.weight.grad is not None
    assert all(p.grad is None for p in module.backbone.teacher.parameters())


def test_dino_with_two_global_views_only_and_outside_training() -> None:
    module = dino_module()
    batch = flat()
    ssl_forwards.dino_forward(module, batch, "train")
    student, teacher = module.dino_loss.args
    assert len(student) == len(teacher) == 2
    out = ssl_forwards.dino_forward(module, {"image": batch["image"]}, "val")
    assert set(out) == {"embedding"}


def test_dino_tells_the_head_the_epoch_for_its_last_layer_freeze() -> None:
    for epoch, frozen in ((0, True), (1, False)):
        module = dino_module(epoch=epoch, freeze_last_layer_epochs=1)
        ssl_forwards.dino_forward(module, flat(), "train")["loss"].backward()
        last = module.projector.student.last_layer.parametrizations.weight.original1
        assert bool((last.grad == 0).all()) == frozen


def test_dino_errors_name_what_is_missing() -> None:
    batch = flat()
    module = dino_module()
    with pytest.raises(TypeError, match=r"'backbone' to be an ssl_core.TeacherStudentWrapper"):
        ssl_forwards.dino_forward(SimpleNamespace(backbone=nn.Linear(5, 8)), batch, "train")
    with pytest.raises(AttributeError, match=r"needs the module attribute 'dino_loss'"):
        ssl_forwards.dino_forward(
            SimpleNamespace(backbone=module.backbone, projector=module.projector), batch, "train"
        )
    with pytest.raises(AttributeError, match=r"'projector'.*DINOHead"):
        ssl_forwards.dino_forward(SimpleNamespace(backbone=module.backbone), batch, "train")
    with pytest.raises(ValueError, match="at least 2 views per sample"):
        ssl_forwards.dino_forward(module, flat(views=1), "train")
    no_idx = {**batch, "local_image": batch["image"]}
    with pytest.raises(KeyError, match="no 'local_sample_idx'"):
        ssl_forwards.dino_forward(module, no_idx, "train")
    other = {**batch, "local_image": torch.randn(5, 5), "local_sample_idx": torch.arange(5)}
    with pytest.raises(ValueError, match="local views must be Vl views of the same samples"):
        ssl_forwards.dino_forward(module, other, "train")


def test_dino_rejects_a_local_crop_size_the_vit_cannot_take() -> None:
    vit = from_timm(
        "vit_tiny_patch16_224",
        img_size=8,
        patch_size=4,
        in_channels=1,
        depth=1,
        embed_dim=16,
        num_heads=2,
    )
    module = SimpleNamespace(
        backbone=TeacherStudentWrapper(vit),
        projector=TeacherStudentWrapper(DINOHead(16, out_dim=8, hidden=8, bottleneck=4)),
        dino_loss=Recorder(),
        current_epoch=0,
    )
    batch = {"image": torch.randn(4, 1, 8, 8), "sample_idx": torch.arange(2).repeat(2)}
    ok = {
        **batch,
        "local_image": torch.randn(4, 1, 4, 4),
        "local_sample_idx": torch.arange(2).repeat(2),
    }
    ssl_forwards.dino_forward(module, ok, "train")
    assert [s.shape for s in module.dino_loss.args[0]] == [(2, 8)] * 4
    bad = {**ok, "local_image": torch.randn(4, 1, 6, 6)}
    with pytest.raises(ValueError, match=r"batch\['local_image'\] holds 6x6 crops.*multiples of 4"):
        ssl_forwards.dino_forward(module, bad, "train")


def mocov3_module() -> SimpleNamespace:
    torch.manual_seed(0)
    return SimpleNamespace(
        backbone=TeacherStudentWrapper(nn.Linear(5, 8)),
        projector=TeacherStudentWrapper(MLP(8, 16, 6, last_norm="batch", last_norm_affine=False)),
        predictor=MLP(6, 16, 6),
        mocov3_loss=Recorder(),
    )


def test_mocov3_passes_queries_and_momentum_keys() -> None:
    module = mocov3_module()
    perturb_teacher(module.backbone)
    batch = flat()
    out = ssl_forwards.mocov3_forward(module, batch, "train")
    q1, q2, k1, k2 = module.mocov3_loss.args
    # the reference runs all rows at once, as the forward does (batch norm statistics)
    q_all = module.predictor(module.projector.student(module.backbone.student(batch["image"])))
    k_all = module.projector.teacher(module.backbone.teacher(batch["image"]))
    rq1, rq2 = fold_views(q_all, batch["sample_idx"])
    rk1, rk2 = fold_views(k_all, batch["sample_idx"])
    for got, ref in ((q1, rq1), (q2, rq2), (k1, rk1), (k2, rk2)):
        torch.testing.assert_close(got, ref)
    assert q1.requires_grad and not k1.requires_grad and not k2.requires_grad
    torch.testing.assert_close(out["embedding"], module.backbone.teacher(batch["image"]))
    assert q1.shape == (6, 6)


def test_mocov3_errors() -> None:
    module = mocov3_module()
    with pytest.raises(ValueError, match="exactly 2 views per sample"):
        ssl_forwards.mocov3_forward(module, flat(views=3), "train")
    plain = SimpleNamespace(**{**vars(module), "projector": module.projector.student})
    with pytest.raises(TypeError, match=r"'projector' to be an ssl_core.TeacherStudentWrapper"):
        ssl_forwards.mocov3_forward(plain, flat(), "train")
    no_loss = SimpleNamespace(**{**vars(module), "mocov3_loss": None})
    with pytest.raises(AttributeError, match=r"ssl_losses.MoCoV3Loss\(temperature=0.2\)"):
        ssl_forwards.mocov3_forward(no_loss, flat(), "train")


def swav_module(step: int = 0, epoch: int = 0, **hparams: Any) -> SimpleNamespace:
    torch.manual_seed(0)
    return SimpleNamespace(
        backbone=nn.Linear(5, 8),
        projector=nn.Linear(8, 4),
        prototypes=nn.Linear(4, 10, bias=False),
        swav_loss=Recorder(),
        hparams=hparams,
        global_step=step,
        current_epoch=epoch,
    )


def test_swav_scores_are_cosines_to_normalised_prototypes() -> None:
    module = swav_module()
    with torch.no_grad():
        module.prototypes.weight.mul_(3.0)
    batch = flat()
    gen = torch.Generator().manual_seed(2)
    batch["local_image"] = torch.randn(12, 5, generator=gen)
    batch["local_sample_idx"] = torch.unique(batch["sample_idx"]).repeat(2)
    ssl_forwards.swav_forward(module, batch, "train")
    w = module.prototypes.weight
    torch.testing.assert_close(w.norm(dim=1), torch.ones(10))
    high, low, queue = module.swav_loss.args
    assert queue is None and len(high) == 2 and len(low) == 2

    def scores(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(module.projector(module.backbone(x)), dim=1) @ w.T

    for got, x in zip(high, fold_views(batch["image"], batch["sample_idx"]), strict=True):
        torch.testing.assert_close(got, scores(x))
    for got, x in zip(
        low, fold_views(batch["local_image"], batch["local_sample_idx"]), strict=True
    ):
        torch.testing.assert_close(got, scores(x))


def test_swav_freezes_the_prototypes_for_the_first_iterations() -> None:
    for step, frozen in ((4, True), (5, False)):
        module = swav_module(step=step, freeze_prototypes_niters=5)
        ssl_forwards.swav_forward(module, flat(), "train")["loss"].backward()
        grad = module.prototypes.weight.grad
        assert grad is not None and bool((grad == 0).all()) == frozen
        assert module.projector.weight.grad.abs().sum() > 0
    assert not module.prototypes.weight._backward_hooks  # the zeroing hook is not kept


def test_swav_uses_a_full_queue_for_the_codes() -> None:
    queue_rows = F.normalize(torch.randn(20, 4), dim=1)
    module = swav_module(epoch=1, queue_start_epoch=1, queue_length=16)
    module.get_queue = lambda key: queue_rows if key == "swav_queue" else None
    batch = flat()
    out = ssl_forwards.swav_forward(module, batch, "train")
    _, _, queue = module.swav_loss.args
    assert len(queue) == 2
    for q in queue:
        torch.testing.assert_close(q, queue_rows[-16:] @ module.prototypes.weight.T)
        assert not q.requires_grad
    assert out["swav_queue"].shape == (12, 4) and not out["swav_queue"].requires_grad
    module.get_queue = lambda key: queue_rows[:10]  # not full yet: no queue, as official
    ssl_forwards.swav_forward(module, batch, "train")
    assert module.swav_loss.args[2] is None
    early = swav_module(epoch=0, queue_start_epoch=1, queue_length=16)
    ssl_forwards.swav_forward(early, batch, "train")
    assert early.swav_loss.args[2] is None


def test_swav_errors() -> None:
    batch = flat()
    module = swav_module()
    module.prototypes = None
    with pytest.raises(AttributeError, match=r"'prototypes'.*nn.Linear\(<projection_dim>"):
        ssl_forwards.swav_forward(module, batch, "train")
    module.prototypes = nn.Linear(4, 10)
    with pytest.raises(ValueError, match="prototypes must have no bias"):
        ssl_forwards.swav_forward(module, batch, "train")
    queued = swav_module(queue_start_epoch=0, queue_length=8)

    def missing(key: str) -> torch.Tensor:
        raise LookupError(key)

    queued.get_queue = missing
    with pytest.raises(
        LookupError, match=r'OnlineQueue\(key="swav_queue", queue_length=8, dim=4\)'
    ):
        ssl_forwards.swav_forward(queued, batch, "train")
    with pytest.raises(ValueError, match="at least 2 views per sample"):
        ssl_forwards.swav_forward(swav_module(), flat(views=1), "train")


def test_simsiam_is_the_symmetric_stop_gradient_negative_cosine() -> None:
    import ssl_losses

    torch.manual_seed(0)
    module = SimpleNamespace(
        backbone=nn.Linear(5, 8),
        projector=nn.Linear(8, 6),
        predictor=nn.Sequential(nn.Linear(6, 3), nn.ReLU(), nn.Linear(3, 6)),
        simsiam_loss=ssl_losses.NegativeCosineSimilarity(),
    )
    batch = flat()
    with pytest.raises(ValueError, match="exactly 2 views per sample"):
        ssl_forwards.simsiam_forward(module, flat(views=1), "train")
    with pytest.raises(AttributeError, match=r"NegativeCosineSimilarity\(\)"):
        ssl_forwards.simsiam_forward(
            SimpleNamespace(**{**vars(module), "simsiam_loss": None}), batch, "train"
        )
    loss = ssl_forwards.simsiam_forward(module, batch, "train")["loss"]
    params = list(module.backbone.parameters())
    grads = torch.autograd.grad(loss, params)
    # float64 reference: D(p, z) = -cos(p, sg(z)), L = D(p1, z2) / 2 + D(p2, z1) / 2
    x1, x2 = (v.double() for v in fold_views(batch["image"], batch["sample_idx"]))
    double = SimpleNamespace(
        **{k: getattr(module, k) for k in ("backbone", "projector", "predictor")}
    )
    for net in vars(double).values():
        net.double()
    z1, z2 = (double.projector(double.backbone(x)) for x in (x1, x2))
    p1, p2 = double.predictor(z1), double.predictor(z2)
    ref = (
        -(F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean())
        / 2
    )
    ref_grads = torch.autograd.grad(ref, list(double.backbone.parameters()))
    torch.testing.assert_close(loss.double(), ref)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-6)
