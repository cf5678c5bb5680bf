"""iBOT blockwise masking (BEiT-style rectangles until a per-sample prediction ratio is reached)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ssl_data.masks._common import (
    SeededStream,
    check_grid,
    check_range,
    resolve_device,
    uniform,
)

__all__ = ["BlockMasking"]

_ATTEMPTS = 10


def _as_list(value: float | Sequence[float]) -> list[float]:
    return [float(v) for v in value] if isinstance(value, Sequence) else [float(value)]


class BlockMasking(SeededStream):
    """Blockwise patch masks with a random prediction ratio per sample (iBOT, Zhou et al. 2022).

    Same semantics as the official iBOT loader (``pred_shape='block'``), drawn for the whole batch
    at once: each sample draws a ratio ``r`` (uniform in ``[m - v, m + v]`` for each pair
    ``(m, v)`` of ``pred_ratio``/``pred_ratio_var``, then one of those uniformly) and masks until
    ``r * L`` patches are covered. A block has area ``U(min_num_patches, remaining)``, aspect ratio
    ``h / w = exp(U(log a, log b))`` and a uniform position; it is kept when it fits strictly
    inside the grid and adds between 1 and ``remaining`` new patches. A sample stops when 10
    blocks in a row fail, so masks never exceed ``r * L`` patches.

    Args:
        pred_ratio: Mean ratio ``m``, or several (the published ViT recipe uses ``(0.0, 0.3)``:
            half the images unmasked).
        pred_ratio_var: Half-width ``v`` of the uniform ratio around each mean (``(0.0, 0.2)``
            in the published recipe); one value is used for every mean.
        aspect_ratio: ``(a, b)`` range of block aspect ratios; iBOT uses ``(0.3, 1/0.3)``.
        min_num_patches: Smallest block area; ``None`` means ``(min(gh, gw) // 3) ** 2`` as iBOT.
        seed: Optional seed of an own random stream (``seed + rank`` per process); ``None``
            draws from the global RNG.

    Raises:
        ValueError: A ratio range leaves ``[0, 1)``, or the lengths of ``pred_ratio`` and
            ``pred_ratio_var`` differ.

    Example:
        >>> m = BlockMasking(0.3)(4, (14, 14), generator=torch.Generator().manual_seed(0))
        >>> m.shape, bool((m.sum(dim=1) <= 0.3 * 196).all())
        (torch.Size([4, 196]), True)
    """

    def __init__(
        self,
        pred_ratio: float | Sequence[float] = 0.3,
        pred_ratio_var: float | Sequence[float] = 0.0,
        aspect_ratio: Sequence[float] = (0.3, 1 / 0.3),
        min_num_patches: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        means, vars_ = _as_list(pred_ratio), _as_list(pred_ratio_var)
        if len(vars_) == 1:
            vars_ = vars_ * len(means)
        if len(vars_) != len(means) or not means:
            raise ValueError(
                f"pred_ratio_var needs one value or one per pred_ratio; got {len(vars_)} "
                f"variances for {len(means)} ratios."
            )
        for m, v in zip(means, vars_, strict=True):
            if v < 0 or m - v < 0 or m + v >= 1:
                raise ValueError(
                    f"prediction ratio {m} +/- {v} must stay inside [0, 1) (the fraction of "
                    "patches masked); iBOT uses pred_ratio=0.3, pred_ratio_var=0.0 or "
                    "pred_ratio=(0.0, 0.3), pred_ratio_var=(0.0, 0.2)."
                )
        low, high = check_range(aspect_ratio, "aspect_ratio", 0.0, math.inf, positive=True)
        if min_num_patches is not None and min_num_patches < 1:
            raise ValueError(f"min_num_patches must be >= 1 or None, got {min_num_patches}.")
        self.pred_ratio = means
        self.pred_ratio_var = vars_
        self.log_aspect_ratio = (math.log(low), math.log(high))
        self.min_num_patches = min_num_patches

    def sample_ratios(
        self, batch_size: int, generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        """Per-sample prediction ratios ``[N]`` (float32)."""
        means = torch.tensor(self.pred_ratio, device=device)
        vars_ = torch.tensor(self.pred_ratio_var, device=device)
        u = uniform((batch_size, len(means)), generator, device)
        ratios = means - vars_ + 2 * vars_ * u
        choice = (uniform((batch_size,), generator, device) * len(means)).long()
        choice = choice.clamp_(max=len(means) - 1)
        return ratios.gather(1, choice[:, None]).squeeze(1)

    def __call__(
        self,
        batch_size: int,
        grid: Sequence[int] | int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw ``batch_size`` masks on a ``grid = (gh, gw)`` patch grid.

        Args:
            batch_size: ``N``.
            grid: ``(gh, gw)`` (an int means square).
            generator: Seeded generator (any device); ``None`` uses the global RNG.
            device: Device of the returned mask (default: the generator's, else CPU).

        Returns:
            ``[N, gh*gw]`` bool, True = masked, in raster order.
        """
        device = resolve_device(device, generator)
        generator = self.stream(generator, device)
        gh, gw = check_grid(grid, "BlockMasking")
        low = self.min_num_patches
        if low is None:
            low = (min(gh, gw) // 3) ** 2
        rows = torch.arange(gh, device=device).view(1, gh, 1)
        cols = torch.arange(gw, device=device).view(1, 1, gw)
        goal = self.sample_ratios(batch_size, generator, device) * (gh * gw)
        mask = torch.zeros(batch_size, gh, gw, dtype=torch.bool, device=device)
        count = torch.zeros(batch_size, device=device)
        active = count < goal
        log_a, log_b = self.log_aspect_ratio
        while bool(active.any()):
            remaining = goal - count
            added = torch.zeros(batch_size, device=device)
            placed = torch.zeros(batch_size, dtype=torch.bool, device=device)
            for _ in range(_ATTEMPTS):
                trying = active & ~placed
                if not bool(trying.any()):
                    break
                u = uniform((4, batch_size), generator, device)
                area = low + u[0] * (remaining - low)
                aspect = torch.exp(log_a + u[1] * (log_b - log_a))
                h = torch.round(torch.sqrt(area * aspect))
                w = torch.round(torch.sqrt(area / aspect))
                fits = (h < gh) & (w < gw)
                # randint(0, G - s) is inclusive of G - s
                top = torch.floor(u[2] * (gh - h + 1)).clamp(min=0)
                left = torch.floor(u[3] * (gw - w + 1)).clamp(min=0)
                block = (
                    (rows >= top.view(-1, 1, 1))
                    & (rows < (top + h).view(-1, 1, 1))
                    & (cols >= left.view(-1, 1, 1))
                    & (cols < (left + w).view(-1, 1, 1))
                )
                new = (block & ~mask).sum(dim=(1, 2)).float()
                ok = trying & fits & (new > 0) & (new <= remaining)
                mask |= block & ok.view(-1, 1, 1)
                added = torch.where(ok, new, added)
                placed |= ok
            count += added
            active &= placed & (count < goal)
        return mask.flatten(1)
