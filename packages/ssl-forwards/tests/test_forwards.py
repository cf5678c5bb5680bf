"""Direct calls of the forwards (no Trainer): outputs per stage, loss values, errors."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
from torch import nn

import ssl_core
import ssl_forwards
import ssl_losses
from ssl_forwards import (
    barlow_twins_forward,
    byol_forward,
    nnclr_forward,
    simclr_forward,
    supervised_forward,
    vicreg_forward,
)

DIM, FEAT, PROJ = 6, 5, 4


def fold_by_loop(x: torch.Tensor, sample_idx: torch.Tensor) -> list[torch.Tensor]:
    """Independent reference for folding: group rows by sample id with a Python loop."""
    rows: dict[int, list[int]] = {}
    for row, s in enumerate(sample_idx.tolist()):
        rows.setdefault(s, []).append(row)
    ids = sorted(rows)
    n_views = len(rows[ids[0]])
    return [x[[rows[s][v] for s in ids]] for v in range(n_views)]


def joint_module(forward, loss_attr: str, loss: nn.Module) -> ssl_core.Module:
    torch.manual_seed(0)
    return ssl_core.Module(
        forward=forward,
        backbone=nn.Linear(DIM, FEAT),
        projector=nn.Sequential(nn.ReLU(), nn.Linear(FEAT, PROJ)),
        **{loss_attr: loss},
    )


JOINT = [
    (simclr_forward, "simclr_loss", lambda: ssl_losses.NTXEntLoss(temperature=0.5)),
    (vicreg_forward, "vicreg_loss", lambda: ssl_losses.VICRegLoss()),
    (barlow_twins_forward, "barlow_loss", lambda: ssl_losses.BarlowTwinsLoss(lambda_=5e-3)),
]


def test_public_names_and_dotted_paths() -> None:
    from ssl_forwards.barlow_twins import barlow_twins_forward as b
    from ssl_forwards.simclr import simclr_forward as s

    assert ssl_forwards.simclr_forward is s and ssl_forwards.barlow_twins_forward is b
    for name in [
        "simclr_forward",
        "nnclr_forward",
        "byol_forward",
        "vicreg_forward",
        "barlow_twins_forward",
        "supervised_forward",
    ]:
        assert callable(getattr(ssl_forwards, name)) and name in ssl_forwards.__all__
    module = ssl_core.Module(forward="ssl_forwards.simclr_forward", backbone=nn.Identity())
    out = module({"image": torch.ones(2, 3)}, "val")
    assert torch.equal(out["embedding"], torch.ones(2, 3))


@pytest.mark.parametrize(("forward", "loss_attr", "make_loss"), JOINT)
def test_joint_embedding_training_loss_matches_reference(
    forward, loss_attr, make_loss, flat_batch
) -> None:
    batch = flat_batch(n=8, views=2, shuffle=True)
    module = joint_module(forward, loss_attr, make_loss())
    out = module(batch, "train")
    assert set(out) == {"embedding", "loss", "label"}
    torch.testing.assert_close(out["embedding"], module.backbone(batch["image"]))
    assert torch.equal(out["label"], batch["label"])
    z0, z1 = fold_by_loop(module.projector(module.backbone(batch["image"])), batch["sample_idx"])
    torch.testing.assert_close(out["loss"], make_loss()(z0, z1))
    out["loss"].backward()
    assert module.backbone.weight.grad.abs().sum() > 0


def test_simclr_averages_over_all_view_pairs(flat_batch) -> None:
    batch = flat_batch(n=6, views=3, shuffle=True)
    loss_fn = ssl_losses.NTXEntLoss(temperature=0.3)
    module = joint_module(simclr_forward, "simclr_loss", loss_fn)
    views = fold_by_loop(module.projector(module.backbone(batch["image"])), batch["sample_idx"])
    expected = sum(loss_fn(views[i], views[j]) for i, j in itertools.combinations(range(3), 2)) / 3
    torch.testing.assert_close(module(batch, "train")["loss"], expected)


@pytest.mark.parametrize(("forward", "loss_attr", "make_loss"), JOINT)
@pytest.mark.parametrize("stage", ["val", "test", "predict"])
@pytest.mark.parametrize("with_label", [True, False])
def test_no_loss_outside_training(
    forward, loss_attr, make_loss, stage, with_label, flat_batch
) -> None:
    batch = flat_batch(n=4, views=1, label=with_label)
    del batch["sample_idx"]  # evaluation batches need no sample_idx
    module = joint_module(forward, loss_attr, make_loss())
    out = module(batch, stage)
    assert set(out) == ({"embedding", "label"} if with_label else {"embedding"})
    torch.testing.assert_close(out["embedding"], module.backbone(batch["image"]))


@pytest.mark.parametrize(
    ("forward", "attribute"),
    [
        (simclr_forward, "simclr_loss"),
        (simclr_forward, "projector"),
        (vicreg_forward, "vicreg_loss"),
        (barlow_twins_forward, "barlow_loss"),
        (nnclr_forward, "predictor"),
        (nnclr_forward, "nnclr_loss"),
        (byol_forward, "predictor"),
        (supervised_forward, "classifier"),
    ],
)
def test_missing_attribute_names_the_module_argument(forward, attribute, flat_batch) -> None:
    everything = {
        "backbone": nn.Linear(DIM, FEAT),
        "projector": nn.Linear(FEAT, PROJ),
        "predictor": nn.Linear(PROJ, PROJ),
        "classifier": nn.Linear(FEAT, 3),
        "simclr_loss": ssl_losses.NTXEntLoss(),
        "vicreg_loss": ssl_losses.VICRegLoss(),
        "barlow_loss": ssl_losses.BarlowTwinsLoss(),
        "nnclr_loss": ssl_losses.NTXEntLoss(),
    }
    if forward is byol_forward:
        everything["backbone"] = ssl_core.TeacherStudentWrapper(everything["backbone"])
        everything["projector"] = ssl_core.TeacherStudentWrapper(everything["projector"])
    del everything[attribute]
    module = ssl_core.Module(
        forward=forward, hparams={"support_set_size": 8, "projection_dim": PROJ}, **everything
    )
    with pytest.raises(AttributeError, match=rf"Module\(forward={forward.__name__}, {attribute}="):
        module(flat_batch(), "train")


def test_missing_backbone_is_reported_in_every_stage(flat_batch) -> None:
    module = ssl_core.Module(forward=simclr_forward, projector=nn.Identity())
    with pytest.raises(AttributeError, match=r"simclr_forward, backbone="):
        module(flat_batch(), "val")


@pytest.mark.parametrize(
    "forward", [simclr_forward, vicreg_forward, barlow_twins_forward, byol_forward]
)
def test_training_without_sample_idx_names_the_fix(forward, flat_batch) -> None:
    batch = flat_batch()
    del batch["sample_idx"]
    module = _full_module(forward)
    with pytest.raises(KeyError, match=r"sample_idx.*MultiViewAugment"):
        module(batch, "train")


@pytest.mark.parametrize(
    ("forward", "views", "message"),
    [
        (simclr_forward, 1, "at least 2 views per sample in training, got 1"),
        (vicreg_forward, 3, "exactly 2 views per sample in training, got 3"),
        (barlow_twins_forward, 1, "exactly 2 views per sample in training, got 1"),
        (byol_forward, 3, "exactly 2 views per sample in training, got 3"),
    ],
)
def test_unusable_view_count_is_an_error(forward, views, message, flat_batch) -> None:
    module = _full_module(forward)
    with pytest.raises(ValueError, match=message):
        module(flat_batch(n=6, views=views), "train")


def test_unknown_stage_and_missing_image_are_errors(flat_batch) -> None:
    module = _full_module(simclr_forward)
    with pytest.raises(ValueError, match=r"stage='fit'.*one of"):
        module(flat_batch(), "fit")
    with pytest.raises(KeyError, match=r"batch\['image'\].*keys \['label', 'sample_idx', 'x'\]"):
        batch = flat_batch()
        batch["x"] = batch.pop("image")
        module(batch, "val")


def test_non_scalar_loss_is_an_error(flat_batch) -> None:
    module = joint_module(simclr_forward, "simclr_loss", nn.PairwiseDistance())
    with pytest.raises(TypeError, match=r"simclr_loss returned \(8,\), expected a scalar"):
        module(flat_batch(), "train")


def _full_module(forward) -> ssl_core.Module:
    torch.manual_seed(0)
    if forward is byol_forward:
        return ssl_core.Module(
            forward=forward,
            backbone=ssl_core.TeacherStudentWrapper(nn.Linear(DIM, FEAT)),
            projector=ssl_core.TeacherStudentWrapper(nn.Linear(FEAT, PROJ)),
            predictor=nn.Linear(PROJ, PROJ),
        )
    loss_attr, make_loss = {f: (a, m) for f, a, m in JOINT}[forward]
    return joint_module(forward, loss_attr, make_loss())


# ---------------------------------------------------------------------------------- supervised
def test_supervised_logits_and_cross_entropy(flat_batch) -> None:
    torch.manual_seed(0)
    module = ssl_core.Module(
        forward=supervised_forward, backbone=nn.Linear(DIM, FEAT), classifier=nn.Linear(FEAT, 3)
    )
    batch = flat_batch(n=5, views=2)
    out = module(batch, "train")
    assert set(out) == {"embedding", "logits", "loss", "label"}
    logits = module.classifier(module.backbone(batch["image"]))
    torch.testing.assert_close(out["logits"], logits)
    # cross-entropy written out: mean over rows of logsumexp(logits) - logit of the label
    expected = (logits.logsumexp(1) - logits.gather(1, batch["label"][:, None])[:, 0]).mean()
    torch.testing.assert_close(out["loss"], expected)
    # the loss is computed whenever labels are present, so validation logs val/loss
    for stage in ["val", "test", "predict"]:
        evaluated = module(batch, stage)
        assert set(evaluated) == {"embedding", "logits", "label", "loss"}
        torch.testing.assert_close(evaluated["loss"], expected)


def test_supervised_custom_loss_and_missing_label(flat_batch) -> None:
    module = ssl_core.Module(
        forward=supervised_forward,
        backbone=nn.Linear(DIM, FEAT),
        classifier=nn.Linear(FEAT, 3),
        supervised_loss=nn.CrossEntropyLoss(label_smoothing=0.5),
    )
    batch = flat_batch()
    logits = module.classifier(module.backbone(batch["image"]))
    smoothed = nn.functional.cross_entropy(logits, batch["label"], label_smoothing=0.5)
    torch.testing.assert_close(module(batch, "train")["loss"], smoothed)
    del batch["label"]
    for stage in ["val", "test", "predict"]:
        assert set(module(batch, stage)) == {"embedding", "logits"}
    with pytest.raises(KeyError, match=r"needs batch\['label'\] in training"):
        module(batch, "train")


# ---------------------------------------------------------------------------------------- BYOL
def byol_module(**extra) -> ssl_core.Module:
    torch.manual_seed(0)
    module = ssl_core.Module(
        forward=byol_forward,
        backbone=ssl_core.TeacherStudentWrapper(nn.Linear(DIM, FEAT)),
        projector=ssl_core.TeacherStudentWrapper(nn.Sequential(nn.ReLU(), nn.Linear(FEAT, PROJ))),
        predictor=nn.Sequential(nn.Linear(PROJ, 8), nn.ReLU(), nn.Linear(8, PROJ)),
        **extra,
    )
    # make the teacher differ from the student, as after some training
    with torch.no_grad():
        for p in module.backbone.teacher.parameters():
            p.add_(0.3)
    return module


def test_byol_symmetric_loss_against_teacher_targets(flat_batch) -> None:
    module = byol_module()
    batch = flat_batch(n=8, views=2, shuffle=True)
    out = module(batch, "train")
    assert set(out) == {"embedding", "loss", "label"}
    student_bb, teacher_bb = module.backbone.student, module.backbone.teacher
    student_pr, teacher_pr = module.projector.student, module.projector.teacher
    x = batch["image"]
    p0, p1 = fold_by_loop(module.predictor(student_pr(student_bb(x))), batch["sample_idx"])
    t0, t1 = fold_by_loop(teacher_pr(teacher_bb(x)), batch["sample_idx"])

    def byol(p, t):  # 2 - 2 cos, averaged over rows
        cos = (p * t).sum(1) / (p.norm(dim=1) * t.norm(dim=1))
        return (2 - 2 * cos).mean()

    torch.testing.assert_close(out["loss"], (byol(p0, t1) + byol(p1, t0)) / 2)
    torch.testing.assert_close(out["embedding"], teacher_bb(x))
    assert not out["embedding"].requires_grad


def test_byol_teacher_gets_no_gradient(flat_batch) -> None:
    module = byol_module()
    module(flat_batch(), "train")["loss"].backward()
    for wrapper in (module.backbone, module.projector):
        assert all(p.grad is None and not p.requires_grad for p in wrapper.teacher.parameters())
        assert all(
            p.grad is not None and p.grad.abs().sum() > 0 for p in wrapper.student.parameters()
        )
    assert all(p.grad.abs().sum() > 0 for p in module.predictor.parameters())


def test_byol_custom_loss_and_eval_stages(flat_batch) -> None:
    module = byol_module(byol_loss=ssl_losses.NegativeCosineSimilarity())
    batch = flat_batch(n=8, views=2)
    student = module.predictor(module.projector.student(module.backbone.student(batch["image"])))
    target = module.projector.teacher(module.backbone.teacher(batch["image"]))
    (p0, p1), (t0, t1) = (fold_by_loop(v, batch["sample_idx"]) for v in (student, target))
    neg_cos = nn.functional.cosine_similarity
    expected = (-neg_cos(p0, t1).mean() - neg_cos(p1, t0).mean()) / 2
    torch.testing.assert_close(module(batch, "train")["loss"], expected)
    for stage in ["val", "test", "predict"]:
        out = module(batch, stage)
        assert set(out) == {"embedding", "label"}
        torch.testing.assert_close(out["embedding"], module.backbone.teacher(batch["image"]))


def test_byol_needs_teacher_student_wrappers(flat_batch) -> None:
    module = ssl_core.Module(
        forward=byol_forward,
        backbone=nn.Linear(DIM, FEAT),
        projector=nn.Linear(FEAT, PROJ),
        predictor=nn.Linear(PROJ, PROJ),
    )
    with pytest.raises(TypeError, match=r"backbone=ssl_core.TeacherStudentWrapper\(<backbone>\)"):
        module(flat_batch(), "val")
    module.backbone = ssl_core.TeacherStudentWrapper(copy.deepcopy(module.backbone))
    with pytest.raises(TypeError, match=r"'projector' to be an ssl_core.TeacherStudentWrapper"):
        module(flat_batch(), "train")


def test_fold_reads_the_device_once_per_batch_size_and_defers_the_layout_check():
    from ssl_data import fold_views
    from ssl_forwards._common import fold_training_views

    module = ssl_core.Module(forward=lambda self, b, s: {}, optim=False)
    x = torch.arange(12.0).reshape(6, 2)
    batch = {"sample_idx": torch.tensor([2, 0, 1, 0, 2, 1])}
    first = fold_training_views([x], batch, "f", module=module)  # learns 2 views per sample
    again = fold_training_views([x], batch, "f", module=module)  # sort only, no host read
    for got in (first, again):
        for a, b in zip(got[0], fold_views(x, batch["sample_idx"]), strict=True):
            torch.testing.assert_close(a, b)
    assert module._deferred.first_failure() is None
    # a batch of the same size whose samples do not have 2 views each fails at the check point
    fold_training_views([x], {"sample_idx": torch.tensor([0, 0, 0, 1, 2, 2])}, "f", module=module)
    failure = module._deferred.first_failure()
    assert failure is not None and "stopped having 2 views each" in failure.key
