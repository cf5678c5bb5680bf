"""Base class, composition and shared helpers of the batched augmentations."""

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ssl_data.dict_dataset import check_image_batch

__all__ = ["BatchTransform", "Compose", "apply_transform", "to_float"]

Batch = dict[str, Any]


def to_float(image: torch.Tensor) -> torch.Tensor:
    """Return a new float32 copy of ``image`` in ``[0, 1]`` (uint8 is divided by 255).

    The copy is owned by the caller, so transforms may modify it in place.
    """
    if image.dtype == torch.uint8:
        return image.to(torch.float32).div_(255.0)
    if image.dtype == torch.float32:
        return image.clone()
    return image.to(torch.float32)


def uniform(
    n: int, low: float, high: float, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """``n`` independent draws from ``U(low, high)`` on ``device``."""
    return torch.empty(n, device=device).uniform_(low, high, generator=generator)


def bernoulli(
    n: int, p: float, device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """``n`` independent boolean draws that are ``True`` with probability ``p``."""
    return torch.rand(n, device=device, generator=generator) < p


def check_probability(p: float, name: str = "p") -> float:
    """Validate a probability."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}.")
    return float(p)


class BatchTransform:
    """A batched transform ``batch -> batch`` acting on ``batch["image"]``.

    Subclasses implement :meth:`transform` on a float32 ``[B, C, H, W]`` image in ``[0, 1]``
    (uint8 input is converted first; the tensor is a private copy that may be modified in place,
    which avoids large allocations, a measurable cost on CPU) and draw their random parameters
    per image from ``generator`` on the image's device (the global RNG of that device when
    ``generator`` is ``None``). The input dict is not modified; a shallow copy with the new
    image is returned.
    """

    def __call__(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        """Apply the transform to ``batch["image"]``."""
        if "image" not in batch:
            raise KeyError(
                f"batch has no 'image' field (fields: {sorted(batch)}); batched augmentation "
                "reads batch['image'] [B, C, H, W]."
            )
        image = check_image_batch(batch["image"])
        out = dict(batch)
        out["image"] = self.transform(to_float(image), generator)
        return out

    def transform(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Transform a float32 ``[B, C, H, W]`` image in ``[0, 1]`` (may work in place)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def apply_transform(
    op: Callable[..., Batch], batch: Batch, generator: torch.Generator | None
) -> Batch:
    """Call ``op`` on ``batch``, passing ``generator`` to ssl_data transforms only.

    Plain user callables ``batch -> batch`` are called without the generator.
    """
    if isinstance(op, BatchTransform | Compose):
        return op(batch, generator)
    return op(batch)


class Compose:
    """Apply batched transforms in sequence (a per-view pipeline).

    Runs of consecutive :class:`BatchTransform` ops share one float32 copy of the image.

    The fused CPU kernel: when the transforms are ``RandomResizedCrop`` followed by any of
    ``ColorJitter``, ``RandomGrayscale``, ``GaussianBlur``, ``Solarize``, ``Normalize`` in that
    order, CPU batches can run in one fused C loop per image
    (:class:`~ssl_data.augment.fused.FusedViewPipeline`, 4-7x faster at 96 px, see
    ``docs/benchmarks.md``): the same random parameters and images as the eager ops up to float
    rounding. By default such chains use the kernel compiled when ssl-data was installed and the
    eager ops when there is none; nothing is compiled at run time. GPU batches always run the
    eager ops.

    Args:
        transforms: ``BatchTransform`` instances or any callables ``batch -> batch``.
        fused: ``None`` (default): the installed fused kernel for CPU batches of a chain it
            implements, else the eager ops. ``False``: always the eager ops. ``True``: the fused
            kernel, compiled now with the system C compiler if the install has none (error now
            if the chain or the compiler does not allow it).

    Example:
        >>> from ssl_data.augment import HorizontalFlip, Normalize
        >>> pipe = Compose([HorizontalFlip(), Normalize((0.5,), (0.5,))])
        >>> pipe({"image": torch.zeros(2, 1, 4, 4, dtype=torch.uint8)})["image"].min().item()
        -1.0
    """

    def __init__(
        self, transforms: Sequence[Callable[..., Batch]], fused: bool | None = None
    ) -> None:
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose: {t!r} is not callable; pass transforms batch -> batch.")
        self.transforms = list(transforms)
        self.fused = fused
        self._choose_path()

    def _choose_path(self) -> None:
        """Pick the fused kernel or the eager ops for the current ``transforms``."""
        self._fused_pipeline: Any = None
        self._kernel: Any = None
        self._chosen_for = tuple(self.transforms)
        if self.fused is False:
            return
        from ssl_data.augment import fused as kernels

        if self.fused:
            self._fused_pipeline = kernels.FusedViewPipeline(self.transforms)  # raises: says why
            self._kernel = kernels.load_kernel()  # built once here, not at the first training step
        elif kernels.FusedViewPipeline.matches(self.transforms):
            self._kernel = kernels.prebuilt_kernel()
            if self._kernel is not None:
                self._fused_pipeline = kernels.FusedViewPipeline(self.transforms)

    def __getstate__(self) -> dict[str, Any]:
        # a loaded library does not pickle: the path is chosen again where it is unpickled
        state = dict(self.__dict__)
        state.update(_fused_pipeline=None, _kernel=None, _chosen_for=None)
        return state

    def _current_fused_pipeline(self) -> Any:
        """The fused pipeline for the current ``transforms`` (``None``: eager ops)."""
        if self._chosen_for != tuple(self.transforms):  # the list was edited since
            self._choose_path()
        return self._fused_pipeline

    @property
    def uses_fused_kernel(self) -> bool:
        """Whether CPU batches run in the fused kernel (GPU batches never do)."""
        return self._current_fused_pipeline() is not None

    def __call__(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        """Apply every transform in order.

        Runs of consecutive :class:`BatchTransform` ops share one float32 copy of the image that
        they transform in place; other callables receive and return the batch dict.
        """
        fused = self._current_fused_pipeline()
        if fused is not None and "image" in batch:  # (no image: said below)
            source = check_image_batch(batch["image"])
            if source.device.type == "cpu":
                return {**batch, "image": fused(source, generator, self._kernel)}
        image: torch.Tensor | None = None  # owned float image of the current run
        for t in self.transforms:
            if isinstance(t, BatchTransform):
                if image is None:
                    if "image" not in batch:
                        raise KeyError(
                            f"batch has no 'image' field (fields: {sorted(batch)}); batched "
                            "augmentation reads batch['image'] [B, C, H, W]."
                        )
                    image = to_float(check_image_batch(batch["image"]))
                image = t.transform(image, generator)
            else:
                if image is not None:
                    batch = {**batch, "image": image}
                    image = None
                batch = apply_transform(t, batch, generator)
        if image is not None:
            batch = {**batch, "image": image}
        return batch

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        fused = "" if self.fused is None else f", fused={self.fused}"
        return f"Compose([\n  {inner}\n]{fused})"
