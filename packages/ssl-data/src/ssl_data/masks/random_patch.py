"""MAE random patch masking: a per-sample shuffle of the patches by argsort of uniform noise."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_data.masks._common import SeededStream, resolve_device, uniform

__all__ = ["RandomMask", "RandomMasking"]


@dataclass(frozen=True)
class RandomMask:
    """A batch of random patch masks.

    Attributes:
        keep: ``[N, K]`` int64 indices of the visible patches, in shuffled order (gather the
            encoder's input tokens with them).
        restore: ``[N, L]`` int64 inverse permutation: position ``l`` of the shuffled sequence
            ``[visible tokens, mask tokens]`` gathered with ``restore`` is patch ``l``.
        mask: ``[N, L]`` bool, True where a patch is masked (removed), False where visible.
    """

    keep: torch.Tensor
    restore: torch.Tensor
    mask: torch.Tensor


class RandomMasking(SeededStream):
    """Mask a fixed fraction of the patches of every sample uniformly at random (MAE).

    Each sample draws ``L`` uniform numbers; the ``K = int(L * (1 - mask_ratio))`` patches with the
    smallest draws stay visible (He et al. 2022, official ``random_masking``), so every sample
    has exactly ``L - K`` masked patches.

    Args:
        mask_ratio: Fraction of patches removed, in ``(0, 1)``; MAE uses 0.75.
        seed: Optional seed of an own random stream (``seed + rank`` per process); ``None``
            draws from the global RNG.

    Raises:
        ValueError: ``mask_ratio`` is outside ``(0, 1)``.

    Example:
        >>> m = RandomMasking(0.75)(2, 16, generator=torch.Generator().manual_seed(0))
        >>> m.keep.shape, m.mask.sum(dim=1).tolist()
        (torch.Size([2, 4]), [12, 12])
    """

    def __init__(self, mask_ratio: float = 0.75, seed: int | None = None) -> None:
        super().__init__(seed)
        if not 0.0 < float(mask_ratio) < 1.0:
            raise ValueError(
                f"mask_ratio must be in (0, 1) (the fraction of patches removed), got "
                f"{mask_ratio}; MAE uses mask_ratio=0.75."
            )
        self.mask_ratio = float(mask_ratio)

    def num_visible(self, num_patches: int) -> int:
        """Number of visible patches ``K`` out of ``num_patches``.

        Raises:
            ValueError: ``K`` would be 0 or ``L`` (too few patches for this ratio).
        """
        keep = int(num_patches * (1 - self.mask_ratio))
        if not 0 < keep < num_patches:
            raise ValueError(
                f"mask_ratio={self.mask_ratio} on {num_patches} patches leaves {keep} visible; "
                "at least one patch must stay visible and one be masked: use more patches "
                "(a smaller patch size) or a mask ratio closer to 0.5."
            )
        return keep

    def __call__(
        self,
        batch_size: int,
        num_patches: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> RandomMask:
        """Draw ``batch_size`` masks over ``num_patches`` patches.

        Args:
            batch_size: ``N``.
            num_patches: ``L``.
            generator: Seeded generator (any device); ``None`` uses the global RNG.
            device: Device of the returned tensors (default: the generator's, else CPU).

        Returns:
            The :class:`RandomMask`.
        """
        device = resolve_device(device, generator)
        generator = self.stream(generator, device)
        keep = self.num_visible(num_patches)
        noise = uniform((batch_size, num_patches), generator, device)
        shuffle = torch.argsort(noise, dim=1)
        restore = torch.argsort(shuffle, dim=1)
        mask = torch.ones(batch_size, num_patches, dtype=torch.bool, device=device)
        mask[:, :keep] = False
        mask = torch.gather(mask, 1, restore)
        return RandomMask(keep=shuffle[:, :keep], restore=restore, mask=mask)
