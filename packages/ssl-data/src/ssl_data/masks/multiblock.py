"""I-JEPA multi-block masks: target blocks to predict, a context block without the targets."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ssl_data.masks._common import (
    SeededStream,
    check_grid,
    check_range,
    indices_to_mask,
    resolve_device,
    uniform,
)

__all__ = ["MultiBlockMask", "MultiBlockMasking", "block_size"]

_TRIES_PER_RELAXATION = 20


@dataclass(frozen=True)
class MultiBlockMask:
    """A batch of I-JEPA masks (index form, raster order, equal lengths within the batch).

    Attributes:
        context: ``num_contexts`` int64 tensors ``[N, Kc]``: patches the context encoder sees.
        targets: ``num_targets`` int64 tensors ``[N, Kt]``: patches the predictor predicts.
        num_patches: ``L`` of the grid.
    """

    context: list[torch.Tensor]
    targets: list[torch.Tensor]
    num_patches: int

    def context_mask(self) -> torch.Tensor:
        """``[N, L]`` bool, True at the patches of any context block."""
        return torch.stack([indices_to_mask(c, self.num_patches) for c in self.context]).any(0)

    def target_mask(self) -> torch.Tensor:
        """``[N, L]`` bool, True at the patches of any target block."""
        return torch.stack([indices_to_mask(t, self.num_patches) for t in self.targets]).any(0)


def block_size(
    u: float, scale: Sequence[float], aspect_ratio: Sequence[float], grid: Sequence[int]
) -> tuple[int, int]:
    """Block ``(h, w)`` for one uniform draw ``u`` (the official I-JEPA ``_sample_block_size``).

    The same ``u`` sets the scale and the aspect ratio, as in the official code; the area is
    ``int(L * scale)`` and each side is kept strictly smaller than the grid.

    Example:
        >>> block_size(0.0, (0.15, 0.2), (0.75, 1.5), (14, 14))
        (5, 6)
    """
    gh, gw = grid
    scale_value = scale[0] + u * (scale[1] - scale[0])
    area = int(gh * gw * scale_value)
    aspect = aspect_ratio[0] + u * (aspect_ratio[1] - aspect_ratio[0])
    h = min(round(math.sqrt(area * aspect)), gh - 1)
    w = min(round(math.sqrt(area / aspect)), gw - 1)
    return h, w


def _block_masks(
    h: int, w: int, count: tuple[int, ...], grid: tuple[int, int], generator, device
) -> torch.Tensor:
    """``count`` boolean ``h x w`` blocks ``[*count, gh, gw]``; corners as ``randint(0, G - s)``."""
    gh, gw = grid
    u = uniform((2, *count), generator, device)
    top = torch.floor(u[0] * (gh - h)).long()[..., None, None]
    left = torch.floor(u[1] * (gw - w)).long()[..., None, None]
    rows = torch.arange(gh, device=device).view(gh, 1)
    cols = torch.arange(gw, device=device).view(1, gw)
    return (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)


def _first_indices(mask: torch.Tensor, keep: int) -> torch.Tensor:
    """The ``keep`` smallest True positions of each row of ``[N, L]`` bool, ascending."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    return order[:, :keep]


class MultiBlockMasking(SeededStream):
    """I-JEPA context/target masks (Assran et al. 2023), batched, by the official collator's rules.

    Per batch one target block size (scale ``target_scale``, aspect ``target_aspect_ratio``) and
    one context size (scale ``context_scale``, aspect ``context_aspect_ratio``) are drawn. Per
    sample ``num_targets`` target blocks are placed uniformly; each context block is placed
    uniformly and the target blocks are removed from it (``allow_overlap=False``). A context with
    ``min_keep`` patches or fewer is redrawn; after every 20 failed draws one more target is no
    longer removed (the official fallback). Lists are cut to the shortest in the batch, keeping
    the first indices in raster order, so every sample has the same ``Kc`` and ``Kt``.

    Args:
        num_targets: Target blocks per sample (paper: 4).
        target_scale: Area range of a target block as a fraction of the grid (paper: 0.15-0.2).
        target_aspect_ratio: ``h / w`` range of the target blocks (paper: 0.75-1.5).
        num_contexts: Context blocks per sample (paper: 1).
        context_scale: Area range of the context block (paper: 0.85-1.0).
        context_aspect_ratio: ``h / w`` range of the context block (paper: 1.0).
        min_keep: A block must keep more than this many patches (official default 4; the
            official ImageNet configs use 10 on 16 x 16 grids).
        allow_overlap: Keep the target patches in the context (official default False).
        seed: Optional seed of an own random stream (``seed + rank`` per process); ``None``
            draws from the global RNG.

    Raises:
        ValueError: A scale or aspect range is invalid, or a block can never keep more than
            ``min_keep`` patches on the grid it is called with.

    Example:
        >>> masks = MultiBlockMasking()(8, (14, 14), generator=torch.Generator().manual_seed(0))
        >>> len(masks.targets), masks.targets[0].shape[0], masks.context[0].shape[0]
        (4, 8, 8)
    """

    def __init__(
        self,
        num_targets: int = 4,
        target_scale: Sequence[float] = (0.15, 0.2),
        target_aspect_ratio: Sequence[float] = (0.75, 1.5),
        num_contexts: int = 1,
        context_scale: Sequence[float] = (0.85, 1.0),
        context_aspect_ratio: Sequence[float] = (1.0, 1.0),
        min_keep: int = 4,
        allow_overlap: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__(seed)
        if num_targets < 1 or num_contexts < 1:
            raise ValueError(
                f"num_targets and num_contexts must be >= 1, got {num_targets} and "
                f"{num_contexts}; I-JEPA uses 4 targets and 1 context."
            )
        if min_keep < 0:
            raise ValueError(f"min_keep must be >= 0, got {min_keep}.")
        self.num_targets = int(num_targets)
        self.num_contexts = int(num_contexts)
        self.target_scale = check_range(target_scale, "target_scale", 0.0, 1.0, positive=True)
        self.context_scale = check_range(context_scale, "context_scale", 0.0, 1.0, positive=True)
        self.target_aspect_ratio = check_range(
            target_aspect_ratio, "target_aspect_ratio", 0.0, math.inf, positive=True
        )
        self.context_aspect_ratio = check_range(
            context_aspect_ratio, "context_aspect_ratio", 0.0, math.inf, positive=True
        )
        self.min_keep = int(min_keep)
        self.allow_overlap = bool(allow_overlap)
        self._valid_grids: set[tuple[int, int]] = set()

    def check_grid(self, grid: Sequence[int] | int) -> tuple[int, int]:
        """Validate that every possible block keeps more than ``min_keep`` patches on ``grid``.

        Raises:
            ValueError: The smallest target or context block is too small for ``min_keep``.
        """
        gh, gw = check_grid(grid, "MultiBlockMasking")
        if (gh, gw) in self._valid_grids:
            return gh, gw
        for name, scale, aspect in (
            ("target", self.target_scale, self.target_aspect_ratio),
            ("context", self.context_scale, self.context_aspect_ratio),
        ):
            smallest = min(
                h * w
                for h, w in (block_size(k / 1000, scale, aspect, (gh, gw)) for k in range(1001))
            )
            if smallest <= self.min_keep:
                raise ValueError(
                    f"MultiBlockMasking: on a {gh} x {gw} patch grid a {name} block can have "
                    f"only {smallest} patches, not more than min_keep={self.min_keep}; lower "
                    f"min_keep (e.g. min_keep={max(smallest - 1, 0)}), raise the {name} scale, "
                    "or use a finer patch grid (smaller patch size or larger images)."
                )
        self._valid_grids.add((gh, gw))
        return gh, gw

    def __call__(
        self,
        batch_size: int,
        grid: Sequence[int] | int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> MultiBlockMask:
        """Draw the masks of a batch of ``batch_size`` images on a ``(gh, gw)`` grid.

        Args:
            batch_size: ``N``.
            grid: ``(gh, gw)`` patch grid (an int means square).
            generator: Seeded generator (any device); ``None`` uses the global RNG.
            device: Device of the returned indices (default: the generator's, else CPU).

        Returns:
            The :class:`MultiBlockMask`.
        """
        device = resolve_device(device, generator)
        generator = self.stream(generator, device)
        gh, gw = self.check_grid(grid)
        num_patches = gh * gw
        u = uniform((2,), generator, device).tolist()
        th, tw = block_size(u[0], self.target_scale, self.target_aspect_ratio, (gh, gw))
        ch, cw = block_size(u[1], self.context_scale, self.context_aspect_ratio, (gh, gw))
        n, k = batch_size, self.num_targets
        targets = _block_masks(th, tw, (n, k), (gh, gw), generator, device).flatten(2)
        # allowed[:, j]: the patches outside the first j target blocks
        outside = torch.cumprod((~targets).to(torch.uint8), dim=1).bool()
        allowed = torch.cat([torch.ones_like(outside[:, :1]), outside], dim=1)
        contexts = [
            self._context(allowed, ch, cw, (gh, gw), generator) for _ in range(self.num_contexts)
        ]
        keep_c = min(int(c.sum(dim=1).min()) for c in contexts)
        return MultiBlockMask(
            context=[_first_indices(c, keep_c) for c in contexts],
            targets=[_first_indices(targets[:, j], th * tw) for j in range(k)],
            num_patches=num_patches,
        )

    def _context(
        self,
        allowed: torch.Tensor,
        h: int,
        w: int,
        grid: tuple[int, int],
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """One context block per sample ``[N, L]`` bool, redrawn until it keeps > min_keep."""
        n, device = allowed.shape[0], allowed.device
        rows = torch.arange(n, device=device)
        context = torch.zeros(n, allowed.shape[2], dtype=torch.bool, device=device)
        pending = torch.ones(n, dtype=torch.bool, device=device)
        failures = torch.zeros(n, dtype=torch.long, device=device)
        while bool(pending.any()):
            block = _block_masks(h, w, (n,), grid, generator, device).flatten(1)
            if not self.allow_overlap:
                relaxed = (failures // _TRIES_PER_RELAXATION).clamp(max=self.num_targets)
                block &= allowed[rows, self.num_targets - relaxed]
            valid = block.sum(dim=1) > self.min_keep
            context = torch.where((pending & valid)[:, None], block, context)
            failures += (pending & ~valid).long()
            pending &= ~valid
        return context
