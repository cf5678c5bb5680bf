"""Official-code references and peer adapters for the multi-view loss rows of ``losses.py``.

Each case is a set of input tensors (student/prototype scores with gradient, teacher logits
without) and callables ``fn(*tensors) -> loss`` for ours, the reference and each importable peer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ssl_losses import DINOLoss, SwAVLoss

LossFn = Callable[..., torch.Tensor]


def official_dino(n_global: int, out_dim: int) -> LossFn:
    """facebookresearch/dino main_dino.py DINOLoss.forward (one process, no warm-up)."""
    center = torch.zeros(1, out_dim)

    def loss_fn(*views: torch.Tensor) -> torch.Tensor:
        nonlocal center
        student, teacher = views[:-n_global], views[-n_global:]
        student_out = (torch.cat(student) / 0.1).chunk(len(student))
        teacher_output = torch.cat(teacher)
        teacher_out = F.softmax((teacher_output - center.to(teacher_output)) / 0.04, dim=-1)
        teacher_out = teacher_out.detach().chunk(n_global)
        total_loss, n_loss_terms = 0.0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
                total_loss += loss.mean()
                n_loss_terms += 1
        with torch.no_grad():
            batch_center = teacher_output.sum(0, keepdim=True) / len(teacher_output)
            center = center.to(batch_center) * 0.9 + batch_center * 0.1
        return total_loss / n_loss_terms

    return loss_fn


def _official_sinkhorn(out: torch.Tensor, iterations: int = 3, epsilon: float = 0.05):
    q = torch.exp(out / epsilon).t()
    b, k = q.shape[1], q.shape[0]
    q /= torch.sum(q)
    for _ in range(iterations):
        q /= torch.sum(q, dim=1, keepdim=True)
        q /= k
        q /= torch.sum(q, dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


def official_swav(n_high: int) -> LossFn:
    """facebookresearch/swav main_swav.py loss (crops_for_assign = the high-resolution views)."""

    def loss_fn(*views: torch.Tensor) -> torch.Tensor:
        output = torch.cat(views)
        bs, n_crops = views[0].shape[0], len(views)
        loss = 0.0
        for crop_id in range(n_high):
            with torch.no_grad():
                q = _official_sinkhorn(output[bs * crop_id : bs * (crop_id + 1)].detach())[-bs:]
            subloss = 0.0
            for v in np.delete(np.arange(n_crops), crop_id):
                x = output[bs * v : bs * (v + 1)] / 0.1
                subloss -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
            loss += subloss / (n_crops - 1)
        return loss / n_high

    return loss_fn


def dino_case(n_global: int, n_local: int, batch: int, out_dim: int, device: torch.device):
    """Inputs and implementations of the DINO row: student views (grad) then teacher views."""
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(batch, out_dim, generator=g) for _ in range(n_global + n_local)]
    teacher = [torch.randn(batch, out_dim, generator=g) for _ in range(n_global)]
    tensors = [s.to(device).requires_grad_() for s in student] + [t.to(device) for t in teacher]
    ours = DINOLoss(out_dim).to(device)
    fns: dict[str, LossFn] = {
        "ours": lambda *v: ours(list(v[:-n_global]), list(v[-n_global:])),
        "reference": official_dino(n_global, out_dim),
    }
    try:
        from lightly.loss import DINOLoss as LightlyDINOLoss

        peer = LightlyDINOLoss(output_dim=out_dim, warmup_teacher_temp_epochs=0).to(device)
        fns["lightly"] = lambda *v: peer(
            teacher_out=list(v[-n_global:]), student_out=list(v[:-n_global]), epoch=0
        )
    except Exception:  # an absent or incompatible optional peer is skipped, never fatal
        pass
    return tensors, fns


def swav_case(n_high: int, n_low: int, batch: int, prototypes: int, device: torch.device):
    """Inputs and implementations of the SwAV row: cosine scores of normalised features."""
    g = torch.Generator().manual_seed(0)
    weight = F.normalize(torch.randn(prototypes, 128, generator=g), dim=1)
    scores = [
        F.normalize(torch.randn(batch, 128, generator=g), dim=1) @ weight.T
        for _ in range(n_high + n_low)
    ]
    tensors = [s.to(device).requires_grad_() for s in scores]
    ours = SwAVLoss()
    fns: dict[str, LossFn] = {
        "ours": lambda *v: ours(list(v[:n_high]), list(v[n_high:])),
        "reference": official_swav(n_high),
    }
    try:
        from lightly.loss import SwaVLoss as LightlySwaVLoss

        peer = LightlySwaVLoss()
        fns["lightly"] = lambda *v: peer(list(v[:n_high]), list(v[n_high:]))
    except Exception:  # an absent or incompatible optional peer is skipped, never fatal
        pass
    return tensors, fns
