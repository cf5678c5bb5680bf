"""LARS: layer-wise adaptive rate scaling (You et al., 2017), used by SimCLR, BYOL, Barlow Twins."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


class LARS(Optimizer):
    """SGD with momentum and a per-tensor trust ratio ``eta * ||w|| / ||g + wd * w||``.

    Biases and normalisation parameters (every tensor with at most one dimension) are excluded
    from weight decay and from the adaptation when ``exclude_bias_and_norm`` is true, the recipe of
    SimCLR/BYOL/Barlow Twins. A parameter group may override the flag
    (``{"params": ..., "exclude_bias_and_norm": False}``).

    Update per tensor ``w`` with gradient ``g``::

        d = g + weight_decay * w                       (not excluded)
        d = d * eta * ||w|| / ||d||   if ||w|| > 0 and ||d|| > 0   (not excluded)
        m = momentum * m + d
        w = w - lr * m

    Args:
        params: Parameters or parameter groups.
        lr: Learning rate.
        momentum: Momentum factor.
        weight_decay: Weight decay added to the gradient before adaptation.
        eta: Trust coefficient.
        exclude_bias_and_norm: Skip decay and adaptation for tensors with ``ndim <= 1``.

    Example:
        >>> model = torch.nn.Linear(4, 2)
        >>> opt = LARS(model.parameters(), lr=0.1, weight_decay=1e-6)
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        eta: float = 0.001,
        exclude_bias_and_norm: bool = True,
    ) -> None:
        if lr < 0:
            raise ValueError(f"LARS lr must be >= 0, got {lr}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"LARS momentum must be in [0, 1), got {momentum}.")
        if weight_decay < 0:
            raise ValueError(f"LARS weight_decay must be >= 0, got {weight_decay}.")
        if eta <= 0:
            raise ValueError(f"LARS eta (trust coefficient) must be > 0, got {eta}.")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "exclude_bias_and_norm": exclude_bias_and_norm,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimisation step.

        Args:
            closure: Optional closure that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if not (group["exclude_bias_and_norm"] and p.ndim <= 1):
                    if group["weight_decay"] != 0:
                        d_p = d_p.add(p, alpha=group["weight_decay"])
                    param_norm = torch.linalg.vector_norm(p)
                    update_norm = torch.linalg.vector_norm(d_p)
                    one = torch.ones_like(param_norm)
                    trust = torch.where(
                        (param_norm > 0) & (update_norm > 0),
                        group["eta"] * param_norm / update_norm,
                        one,
                    )
                    d_p = d_p.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(d_p).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d_p)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss
