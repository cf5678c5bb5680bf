"""MAE, I-JEPA and iBOT forwards: what each loss sees, gradients, teachers and errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ssl_core
import ssl_losses
from ssl_core.backbone import IJEPAPredictor, MAEDecoder, SmallResNet
from ssl_data import masks as M
from ssl_forwards import ibot_forward, ijepa_forward, mae_forward


class TinyViT(nn.Module):
    """A minimal ViT with the ViTBackbone token API (forward_tokens with keep/mask)."""

    def __init__(self, img=8, patch=2, channels=1, dim=16, depth=1, heads=2, cls=True):
        super().__init__()
        self.patch_size = patch
        self.embed_dim = self.out_features = dim
        self.num_prefix_tokens = int(cls)
        self.proj = nn.Conv2d(channels, dim, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, (img // patch) ** 2, dim) * 0.02)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls else None
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.Sequential(
            *[
                nn.TransformerEncoderLayer(dim, heads, 2 * dim, 0.0, batch_first=True)
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(dim)

    def patch_grid(self, h, w):
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"image size {h} x {w} is not divisible by the patch size")
        return h // self.patch_size, w // self.patch_size

    def forward_tokens(self, x, *, keep=None, mask=None):
        self.patch_grid(*x.shape[-2:])
        t = self.proj(x).flatten(2).transpose(1, 2)
        if mask is not None:
            t = torch.where(mask[..., None], self.mask_token.to(t.dtype), t)
        t = t + self.pos[:, : t.shape[1]]  # smaller local crops take the first positions
        if keep is not None:
            t = torch.gather(t, 1, keep[..., None].expand(-1, -1, t.shape[2]))
        if self.cls_token is not None:
            t = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1)
        t = self.norm(self.blocks(t))
        p = self.num_prefix_tokens
        return {"cls": t[:, 0] if p else None, "patches": t[:, p:]}

    def forward(self, x):
        tokens = self.forward_tokens(x)
        return tokens["cls"] if tokens["cls"] is not None else tokens["patches"].mean(1)


IMG, PATCH, DIM = 8, 2, 16
GRID = (IMG // PATCH, IMG // PATCH)
L = GRID[0] * GRID[1]


def _images(n=4, seed=0):
    return torch.randn(n, 1, IMG, IMG, generator=torch.Generator().manual_seed(seed))


class Recorder(nn.Module):
    """Wraps a loss, keeps its inputs and lets gradients of selected inputs be read."""

    def __init__(self, loss, retain=()):
        super().__init__()
        self.loss, self.retain, self.args = loss, retain, None

    def forward(self, *args, **kwargs):
        for i in self.retain:
            for t in args[i] if isinstance(args[i], list) else [args[i]]:
                t.retain_grad()
        self.args = args
        return self.loss(*args, **kwargs)


def _mae(**extra):
    torch.manual_seed(0)
    return ssl_core.Module(
        forward=mae_forward,
        backbone=TinyViT(IMG, PATCH, dim=DIM),
        decoder=MAEDecoder(DIM, GRID, PATCH, 1, decoder_dim=8, depth=1, num_heads=2),
        **extra,
    )


def _mae_reference(pred, target, mask):
    """Float64 MAE loss from the official code: norm_pix_loss, mean over masked patches."""
    pred, target = pred.double(), target.double()
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
    target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


def test_mae_loss_only_on_masked_patches():
    recorder = Recorder(ssl_losses.MAELoss(norm_pix_loss=True), retain=(0,))
    module = _mae(mae_loss=recorder)
    batch = {"image": _images(), "label": torch.arange(4)}
    out = module(batch, "train")
    pred, target, mask = recorder.args
    assert torch.equal(target, M.patchify(batch["image"], PATCH))
    assert torch.equal(mask, out["mae_mask"]) and (mask.sum(1) == L - int(L * 0.25)).all()
    torch.testing.assert_close(out["loss"].double(), _mae_reference(pred, target, mask))
    out["loss"].backward()
    assert pred.grad[~mask].abs().max() == 0 and pred.grad[mask].abs().sum() > 0
    assert out["embedding"].shape == (4, DIM) and not out["embedding"].requires_grad
    assert torch.equal(out["label"], batch["label"])


def test_mae_encoder_sees_only_visible_patches():
    module = _mae(hparams={"mask_ratio": 0.5})
    seen = []
    original = module.backbone.forward_tokens
    module.backbone.forward_tokens = lambda x, **kw: (
        seen.append(kw.get("keep")) or original(x, **kw)
    )
    module({"image": _images()}, "train")
    assert seen[0].shape == (4, L // 2) and seen[1] is None  # masked pass, then the embedding
    assert module({"image": _images()}, "val")["embedding"].shape == (4, DIM)


def _ijepa(**extra):
    torch.manual_seed(0)
    return ssl_core.Module(
        forward=ijepa_forward,
        backbone=ssl_core.TeacherStudentWrapper(TinyViT(IMG, PATCH, dim=DIM, cls=False)),
        predictor=IJEPAPredictor(DIM, GRID, predictor_dim=8, depth=1, num_heads=2),
        masking=M.MultiBlockMasking(min_keep=0),
        **extra,
    )


def test_ijepa_targets_come_from_the_ema_encoder_without_gradient():
    recorder = Recorder(ssl_losses.IJEPALoss())
    module = _ijepa(ijepa_loss=recorder)
    wrapper = module.backbone
    with torch.no_grad():  # make teacher and student differ, as after EMA updates
        for p in wrapper.teacher.parameters():
            p.add_(0.1 * torch.randn_like(p))
    image = _images()
    torch.manual_seed(1)
    out = module({"image": image}, "train")
    pred, target = recorder.args
    assert not target.requires_grad and pred.requires_grad
    # regenerate the same masks: the targets are the teacher's tokens at the target blocks
    torch.manual_seed(1)
    drawn = module.masking(4, GRID)
    teacher = wrapper.teacher.forward_tokens(image)["patches"]
    expected = torch.cat([teacher[torch.arange(4)[:, None], t] for t in drawn.targets])
    torch.testing.assert_close(target, expected)
    out["loss"].backward()
    assert all(p.grad is None for p in wrapper.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in wrapper.student.parameters())
    torch.testing.assert_close(out["embedding"], teacher.mean(1))


def test_ijepa_context_excludes_the_targets():
    module = _ijepa()
    seen = []
    original = module.backbone.student.forward_tokens
    module.backbone.student.forward_tokens = lambda x, **kw: (
        seen.append(kw["keep"]) or original(x, **kw)
    )
    torch.manual_seed(2)
    module({"image": _images()}, "train")
    torch.manual_seed(2)
    drawn = module.masking(4, GRID)
    assert torch.equal(seen[0], drawn.context[0])
    assert not (drawn.context_mask() & drawn.target_mask()).any()


class _Head(nn.Module):
    def __init__(self, out_dim=10):
        super().__init__()
        self.fc = nn.Linear(DIM, out_dim)

    def forward(self, x, epoch=None):
        return self.fc(x)


def _ibot(**extra):
    torch.manual_seed(0)
    parts = {
        "backbone": ssl_core.TeacherStudentWrapper(TinyViT(IMG, PATCH, dim=DIM)),
        "projector": ssl_core.TeacherStudentWrapper(_Head()),
        "dino_loss": ssl_losses.DINOLoss(10),
        "masking": M.BlockMasking(0.4, min_num_patches=2),
    }
    return ssl_core.Module(forward=ibot_forward, **{**parts, **extra})


def _two_view_batch(n=4):
    image = torch.cat([_images(n, 0), _images(n, 1)])
    return {"image": image, "sample_idx": torch.arange(n).repeat(2), "label": torch.arange(2 * n)}


def test_ibot_patch_loss_only_on_masked_tokens():
    recorder = Recorder(ssl_losses.iBOTPatchLoss(10), retain=(0,))
    module = _ibot(ibot_patch_loss=recorder)
    out = module(_two_view_batch(), "train")
    student, teacher, masks = recorder.args
    assert len(student) == len(teacher) == len(masks) == 2
    assert not any(t.requires_grad for t in teacher)
    flat = torch.cat(masks)
    assert torch.equal(flat, out["ibot_mask"]) and flat.any() and not flat.all()
    loss_patch = recorder.loss(student, teacher, masks)
    grads = torch.autograd.grad(loss_patch, student)
    for g, m in zip(grads, masks, strict=True):
        assert g[~m].abs().max() == 0 and g[m].abs().sum() > 0
    assert out["embedding"].shape == (8, DIM)


def test_ibot_student_head_on_masked_tokens_only_keeps_loss_and_gradients(monkeypatch):
    import ssl_forwards.ibot as ibot_module

    def run(module):
        out = module(_two_view_batch(), "train")
        out["loss"].backward()
        params = list(module.backbone.student.parameters()) + list(module.projector.parameters())
        return out, [p.grad.clone() for p in params if p.grad is not None]

    masked_head_tokens = ibot_module._masked_head_tokens
    masked_out, masked_grads = run(_ibot(ibot_patch_loss=ssl_losses.iBOTPatchLoss(10)))
    monkeypatch.setattr(
        ibot_module,
        "_masked_head_tokens",
        lambda c, h, t, m, e: ibot_module._head_tokens(c, h, t, e),
    )
    full_out, full_grads = run(_ibot(ibot_patch_loss=ssl_losses.iBOTPatchLoss(10)))
    assert torch.equal(masked_out["ibot_mask"], full_out["ibot_mask"])
    torch.testing.assert_close(masked_out["loss"], full_out["loss"])
    assert len(masked_grads) == len(full_grads) > 0
    for g_masked, g_full in zip(masked_grads, full_grads, strict=True):
        torch.testing.assert_close(g_masked, g_full)
    head = ssl_core.TeacherStudentWrapper(_Head())
    rows = []
    head.student.fc.register_forward_hook(lambda mod, args, out: rows.append(args[0].shape[0]))
    tokens = torch.randn(8, L, DIM)
    mask = masked_out["ibot_mask"]
    got = masked_head_tokens(head.forward_student, head, tokens, mask, 0)
    assert rows == [int(mask.sum())] and rows[0] < mask.numel()
    assert got[~mask].abs().max() == 0
    torch.testing.assert_close(got[mask], head.student.fc(tokens[mask]))


def test_ibot_head_with_batch_norm_sees_every_token():
    import ssl_forwards.ibot as ibot_module

    head = ssl_core.TeacherStudentWrapper(nn.Sequential(nn.Linear(DIM, 10), nn.BatchNorm1d(10)))
    tokens = torch.randn(8, L, DIM)
    mask = torch.zeros(8, L, dtype=torch.bool)
    mask[:, :2] = True
    got = ibot_module._masked_head_tokens(head.forward_student, head, tokens, mask, 0)
    torch.testing.assert_close(got, head.student(tokens.reshape(-1, DIM)).reshape(8, L, 10))


def test_ibot_student_sees_the_masks_and_teacher_the_full_image():
    module = _ibot(ibot_patch_loss=ssl_losses.iBOTPatchLoss(10))
    seen = {"student": [], "teacher": []}
    for role in ("student", "teacher"):
        net = getattr(module.backbone, role)
        original = net.forward_tokens
        net.forward_tokens = lambda x, _o=original, _r=role, **kw: (
            seen[_r].append(kw.get("mask")) or _o(x, **kw)
        )
    out = module(_two_view_batch(), "train")
    assert seen["teacher"] == [None]
    assert torch.equal(seen["student"][0], out["ibot_mask"])
    total = out["loss_cls"] + out["loss_patch"]
    torch.testing.assert_close(out["loss"].detach(), total)


def test_ibot_local_crops_join_the_cls_loss_only():
    recorder = Recorder(ssl_losses.DINOLoss(10))
    module = _ibot(dino_loss=recorder, ibot_patch_loss=ssl_losses.iBOTPatchLoss(10))
    batch = _two_view_batch()
    batch["local_image"] = torch.randn(12, 1, 4, 4)  # 3 local crops of the 4 samples
    batch["local_sample_idx"] = torch.arange(4).repeat(3)
    out = module(batch, "train")
    student, teacher = recorder.args
    assert len(teacher) == 2 and len(student) == 5
    assert all(s.shape == (4, 10) for s in student)
    local = module.projector.student(module.backbone.student(batch["local_image"][:4]))
    torch.testing.assert_close(student[2], local)
    assert out["ibot_mask"].shape == (8, L)


def test_masked_methods_reject_a_cnn_backbone_naming_vit_tiny():
    image = {"image": torch.randn(2, 1, 8, 8)}
    cnn = SmallResNet(in_channels=1, widths=[8], blocks=1)
    with pytest.raises(TypeError, match="backbone=vit_tiny"):
        ssl_core.Module(forward=mae_forward, backbone=cnn)(image, "val")
    wrapped = ssl_core.TeacherStudentWrapper(SmallResNet(in_channels=1, widths=[8], blocks=1))
    for forward in (ijepa_forward, ibot_forward):
        with pytest.raises(TypeError, match="backbone=vit_tiny"):
            ssl_core.Module(forward=forward, backbone=wrapped)(image, "val")


def test_missing_teacher_wrapper_decoder_and_image_size():
    vit = TinyViT(IMG, PATCH, dim=DIM)
    with pytest.raises(TypeError, match="TeacherStudentWrapper"):
        ssl_core.Module(forward=ijepa_forward, backbone=vit)({"image": _images()}, "val")
    with pytest.raises(AttributeError, match="decoder"):
        ssl_core.Module(forward=mae_forward, backbone=vit)({"image": _images()}, "train")
    with pytest.raises(ValueError, match="not divisible by the patch size"):
        _mae()({"image": torch.randn(2, 1, 9, 9)}, "train")
    with pytest.raises(AttributeError, match="ibot_patch_loss"):
        _ibot()(_two_view_batch(), "train")


def test_teacher_methods_need_the_ema_callback_in_a_trainer(make_trainer):
    module = _ijepa()
    module.trainer = make_trainer(max_steps=1)
    with pytest.raises(RuntimeError, match="TeacherStudentCallback"):
        module({"image": _images()}, "train")
