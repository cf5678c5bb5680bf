"""BYOL forward (Grill et al., 2020): predict the EMA teacher's projections of the other view."""

from __future__ import annotations

from typing import Any

import torch

from ssl_forwards._common import (
    as_scalar,
    base_outputs,
    check_stage,
    fold_training_views,
    require,
    require_image,
)
from ssl_losses import BYOLLoss

_NAME = "byol_forward"


def _require_wrapper(self: Any, name: str) -> Any:
    wrapper = require(self, name, _NAME, f"ssl_core.TeacherStudentWrapper(<{name}>)")
    if not (hasattr(wrapper, "forward_student") and hasattr(wrapper, "forward_teacher")):
        raise TypeError(
            f"{_NAME} needs {name!r} to be an ssl_core.TeacherStudentWrapper (it calls "
            f"forward_student and forward_teacher), got {type(wrapper).__name__}; wrap it: "
            f"ssl_core.Module(forward={_NAME}, {name}=ssl_core.TeacherStudentWrapper(<{name}>), "
            "...) and add ssl_callbacks.TeacherStudentCallback() to the trainer."
        )
    return wrapper


def byol_forward(self: Any, batch: dict[str, Any], stage: str) -> dict[str, Any]:
    """Forward function for BYOL.

    Module attributes:
        backbone: ``ssl_core.TeacherStudentWrapper`` around a ``[B, ...] -> [B, D]`` network.
        projector: ``ssl_core.TeacherStudentWrapper`` around a ``[B, D] -> [B, P]`` head.
        predictor: ``[B, P] -> [B, P]`` head on the online (student) branch only.
        byol_loss: optional ``(prediction, target) -> scalar``; defaults to
            ``ssl_losses.BYOLLoss()``.

    The teacher moves only by EMA: add ``ssl_callbacks.TeacherStudentCallback()`` to the trainer.
    Training batches must hold exactly 2 views per sample (folded by ``sample_idx``). With
    online predictions ``p_v`` and teacher projections ``t_v`` (computed under ``no_grad``), the
    symmetric loss is ``(byol_loss(p_0, t_1) + byol_loss(p_1, t_0)) / 2``.

    ``embedding`` is the *teacher* backbone's output (the EMA target network), detached, for every
    row and in every stage.

    Args:
        self: The bound module (``ssl_core.Module``).
        batch: Batch dict with ``image`` and, in training, ``sample_idx``; ``label`` optional.
        stage: ``"train"``, ``"val"``, ``"test"`` or ``"predict"``.

    Returns:
        ``embedding`` (``[B, D]``), ``label`` when present, ``loss`` in training.

    Raises:
        AttributeError: A required module attribute is missing.
        TypeError: ``backbone`` or ``projector`` is not a teacher/student wrapper.
        KeyError: ``image`` is missing, or ``sample_idx`` is missing in training.
        ValueError: Not exactly 2 views per sample in training, or an unknown stage.
    """
    training = check_stage(stage, _NAME)
    backbone = _require_wrapper(self, "backbone")
    out = base_outputs(batch)
    image = require_image(batch, _NAME)
    with torch.no_grad():
        teacher_features = backbone.forward_teacher(image)
    out["embedding"] = teacher_features.detach()
    if not training:
        return out
    projector = _require_wrapper(self, "projector")
    predictor = require(self, "predictor", _NAME, "ssl_core.backbone.MLP(...)")
    loss_fn = getattr(self, "byol_loss", None)
    if loss_fn is None:
        loss_fn = BYOLLoss()

    predictions = predictor(projector.forward_student(backbone.forward_student(image)))
    with torch.no_grad():
        targets = projector.forward_teacher(teacher_features).detach()
    (p0, p1), (t0, t1) = fold_training_views(
        [predictions, targets], batch, _NAME, exact_views=2, module=self
    )
    loss = (
        as_scalar(loss_fn(p0, t1), _NAME, "byol_loss")
        + as_scalar(loss_fn(p1, t0), _NAME, "byol_loss")
    ) / 2
    out["loss"] = loss
    return out
