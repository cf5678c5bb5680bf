"""Checks and helpers shared by the ViT-only forwards (MAE, I-JEPA, iBOT).

The teacher/student, multi-crop and hyper-parameter helpers they share with DINO are in
``ssl_forwards._multicrop``.
"""

from __future__ import annotations

from typing import Any

import torch

POOLS = ("cls", "mean")


def check_vit(network: Any, forward_name: str, name: str = "backbone") -> Any:
    """Return ``network`` if it has the ViT token API, else raise naming ``backbone=vit_tiny``.

    Raises:
        TypeError: ``network`` has no ``forward_tokens``/``patch_size``/``patch_grid`` (a CNN).
    """
    if not all(hasattr(network, a) for a in ("forward_tokens", "patch_size", "patch_grid")):
        raise TypeError(
            f"{forward_name} needs a Vision Transformer as {name!r} (it masks patch tokens), got "
            f"{type(network).__name__}; use backbone=vit_tiny (or vit_small, or "
            "ssl_core.backbone.from_timm('vit_tiny_patch16_224', img_size=28, patch_size=4, "
            "in_channels=1) in Python)."
        )
    return network


def require_teacher_updates(self: Any, forward_name: str) -> None:
    """Raise if the module trains under a trainer with no teacher EMA callback.

    Without ``ssl_callbacks.TeacherStudentCallback`` the teacher would stay at its initial
    weights for the whole run, silently.
    """
    trainer = getattr(self, "_trainer", None)
    if trainer is None:
        return
    for callback in getattr(trainer, "callbacks", []):
        if any(cls.__name__ == "TeacherStudentCallback" for cls in type(callback).__mro__):
            return
    raise RuntimeError(
        f"{forward_name} trains an EMA teacher but the trainer has no "
        "ssl_callbacks.TeacherStudentCallback, so the teacher would never move; add it: "
        "Trainer(callbacks=[ssl_callbacks.TeacherStudentCallback(), ...]) or, in a method "
        "config, callbacks: {teacher_ema: {_target_: ssl_callbacks.TeacherStudentCallback}}."
    )


def pool_tokens(tokens: dict[str, Any], pool: str, forward_name: str) -> torch.Tensor:
    """``[B, D]`` embedding from ``forward_tokens`` output: the CLS token or the patch mean.

    ``"cls"`` falls back to the patch mean for models without a CLS token.
    """
    if pool not in POOLS:
        raise ValueError(
            f"{forward_name}: embedding_pool must be one of {POOLS}, got {pool!r}; set "
            "hparams.embedding_pool."
        )
    if pool == "cls" and tokens.get("cls") is not None:
        return tokens["cls"]
    return tokens["patches"].mean(dim=1)


def grid_of(backbone: Any, image: torch.Tensor) -> tuple[int, int]:
    """Patch grid of ``image`` (the backbone raises if the size is not divisible)."""
    return tuple(backbone.patch_grid(image.shape[-2], image.shape[-1]))
