"""Checks recorded on the device during training and read on the host only at check points.

Reading a device value on the host (``bool(t)``, ``t.item()``) waits for every queued kernel, so
a check per step would stall the GPU every step. Each check here instead keeps, on the device,
whether it failed and the first global step at which it did; :meth:`DeferredChecks.first_failure`
reads them all at once (one host read) at the Module's check points.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

NON_FINITE_LOSS = "non-finite loss"


@dataclass
class Failure:
    """The first failure among the recorded checks.

    Attributes:
        key: The failed check's key (:data:`NON_FINITE_LOSS` or a caller's message).
        step: The first global step at which it failed.
        value: The value recorded with the failure (the loss for :data:`NON_FINITE_LOSS`).
    """

    key: str
    step: int
    value: float


class DeferredChecks:
    """Per-check device tensors holding the first failing step and the value seen then."""

    def __init__(self) -> None:
        self._failed: dict[str, torch.Tensor] = {}
        self._first: dict[str, torch.Tensor] = {}
        self._value: dict[str, torch.Tensor] = {}

    def record(
        self, key: str, failed: torch.Tensor, step: int, value: torch.Tensor | None = None
    ) -> None:
        """Remember ``step`` for ``key`` if ``failed`` (a 0-d bool tensor) and it had not failed.

        Args:
            key: Names the check; the first failure of each key is kept.
            failed: 0-d boolean tensor, ``True`` when the check failed at this step.
            step: The current global step.
            value: A 0-d tensor to report with the failure (e.g. the loss).
        """
        failed = failed.detach().reshape(())
        seen = self._failed.get(key)
        if seen is None or seen.device != failed.device:
            seen = torch.zeros((), dtype=torch.bool, device=failed.device)
            self._first[key] = torch.zeros((), dtype=torch.long, device=failed.device)
            self._value[key] = torch.zeros((), dtype=torch.float64, device=failed.device)
        new = failed & ~seen
        self._failed[key] = seen | failed
        self._first[key] = torch.where(new, step, self._first[key])
        if value is not None:
            value = value.detach().reshape(()).to(torch.float64)
            self._value[key] = torch.where(new, value, self._value[key])

    def first_failure(self) -> Failure | None:
        """Return the earliest failure over all checks (and all processes), or ``None``.

        This reads the device (one host synchronisation); under ``torch.distributed`` every
        process must call it at the same point, as the per-check steps are reduced over ranks
        so that all processes stop together.
        """
        if not self._failed:
            return None
        keys = sorted(self._first)
        device = self._first[keys[0]].device
        failed = torch.stack([self._failed[k].to(device) for k in keys])
        firsts = torch.where(failed, torch.stack([self._first[k].to(device) for k in keys]), _NEVER)
        values = torch.stack([self._value[k].to(device) for k in keys])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            firsts, values = _reduce_earliest(firsts, values)
        steps = [(s, i) for i, s in enumerate(firsts.tolist()) if s != _NEVER]
        if not steps:
            return None
        step, i = min(steps)
        return Failure(keys[i], int(step), float(values[i]))


_NEVER = torch.iinfo(torch.long).max


def _reduce_earliest(
    firsts: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Earliest failing step per check over ranks (``_NEVER`` if none) and a value seen then."""
    earliest = firsts.clone()
    dist.all_reduce(earliest, op=dist.ReduceOp.MIN)
    # the values of the ranks that failed at the earliest step (NaN and Inf stay non-finite)
    mine = torch.where(firsts == earliest, values, torch.zeros_like(values))
    dist.all_reduce(mine, op=dist.ReduceOp.SUM)
    return earliest, mine
