"""A Lightning DataModule: worker-process loaders, views owned by the data, exact resume.

Needs ``lightning`` (``pip install ssl-data[lightning]``); the rest of ``ssl_data`` does not.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning.pytorch as pl

from ssl_data.image_dataset import NOTES_KEY, ImageFileDataset
from ssl_data.loader import make_loader
from ssl_data.presets import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from ssl_data.recipe import ViewRecipe, as_recipe

__all__ = ["DataModule"]

log = logging.getLogger("ssl_data")
_SPLIT_KEYS = frozenset(
    {
        "dataset",
        "batch_size",
        "shuffle",
        "drop_last",
        "limit",
        "num_workers",
        "persistent_workers",
        "pin_memory",
        "prefetch_factor",
    }
)
_LOADER_KEYS = ("num_workers", "persistent_workers", "pin_memory", "prefetch_factor")


class DataModule(pl.LightningDataModule):
    """Train/val/test loaders (``StatefulDataLoader``, worker processes) and the view recipe.

    Each split is a dict with ``dataset`` (e.g. ``ssl_data.get_dataset(...)``: an in-memory
    ``TensorImageDataset`` or a lazily decoded ``ImageFileDataset``) and loader settings
    ``batch_size``, ``shuffle``, ``drop_last``, ``limit`` and ``num_workers``,
    ``persistent_workers``, ``pin_memory``, ``prefetch_factor`` (these four default to the
    module-wide arguments, then to :func:`ssl_data.loader.make_loader`'s machine defaults).

    Training batches get ``views`` in ``on_after_batch_transfer`` (on the batch's device). For
    image files the workers decode and crop every view (the whole image, random-resized to the
    view size), so only the photometric ops run on the device; in-memory batches run the whole
    recipe batched. Evaluation batches get ``eval_transform`` (default: resize to
    ``image_size`` and normalise with ``mean``/``std``).

    Precedence: a stage for which the LightningModule has its own ``batch_transforms``
    (``ssl_core.Module(batch_transforms=...)``, the escape hatch) is left to the module: the
    DataModule then yields plain images for it (file images resized and centre-cropped to
    ``image_size``) and says so once in the log.

    The loader positions (mid-epoch, with workers) and the views' random streams are saved in
    Lightning checkpoints, so a resumed run continues exactly.

    Args:
        train: The training split.
        val: The validation split (online probe / kNN), or ``None``.
        test: The test split, or ``None``.
        views: The training view recipe (``ssl_data.presets.simclr_views(...)``,
            ``multicrop_views(...)``, ...), or ``None`` for plain images.
        eval_transform: Evaluation batch transform, or ``None`` for the default.
        seed: Seed of shuffling and worker crops.
        name: Dataset name (informational).
        num_classes: Number of classes.
        in_channels: Image channels (files are converted to it).
        image_size: Image side for evaluation (and plain training images).
        mean: Normalisation mean (default: the dataset's, else ImageNet's).
        std: Normalisation std.
        root: Dataset root (informational; pass it to the dataset's own config).
        download: Whether datasets may be downloaded (informational, as ``root``).
        augment: Dataset-specific augmentation settings read by configs (``${data.augment.*}``).
        num_workers: Default worker count of every split.
        persistent_workers: Default of every split.
        pin_memory: Default of every split.
        prefetch_factor: Default of every split.
        skip_bad_files: Skip unreadable image files (each logged and counted) instead of
            raising.

    Example:
        >>> import torch, ssl_data  # doctest: +SKIP
        >>> ds = ssl_data.TensorImageDataset(torch.zeros(8, 1, 4, 4, dtype=torch.uint8))
        >>> dm = DataModule(train={"dataset": ds, "batch_size": 4}, views=None)
    """

    def __init__(
        self,
        train: Mapping[str, Any] | None = None,
        val: Mapping[str, Any] | None = None,
        test: Mapping[str, Any] | None = None,
        views: Any = None,
        eval_transform: Callable[[Any], Any] | None = None,
        seed: int = 0,
        name: str | None = None,
        num_classes: int | None = None,
        in_channels: int | None = None,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        root: str | None = None,
        download: bool = False,
        augment: Mapping[str, Any] | None = None,
        num_workers: int | None = None,
        persistent_workers: bool | None = None,
        pin_memory: bool | None = None,
        prefetch_factor: int | None = None,
        skip_bad_files: bool = False,
    ) -> None:
        super().__init__()
        self.splits: dict[str, dict[str, Any]] = {}
        for split, spec in (("train", train), ("val", val), ("test", test)):
            if spec is None:
                continue
            unknown = sorted(set(spec) - _SPLIT_KEYS)
            if unknown:
                raise ValueError(
                    f"data.{split}: unknown key(s) {unknown}; valid keys: {sorted(_SPLIT_KEYS)}."
                )
            if "dataset" not in spec:
                raise ValueError(f"data.{split} needs a 'dataset' entry.")
            self.splits[split] = dict(spec)
        if "train" not in self.splits:
            raise ValueError("data.train is required (a dict with 'dataset' and 'batch_size').")
        self.views: ViewRecipe | None = as_recipe(views)
        self.augment = dict(augment or {})
        self.seed = seed
        self.name = name
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.root = root
        self.download = download
        self.skip_bad_files = skip_bad_files
        self.loader_defaults = {
            "num_workers": num_workers,
            "persistent_workers": persistent_workers,
            "pin_memory": pin_memory,
            "prefetch_factor": prefetch_factor,
        }
        self._eval_transform = eval_transform
        self.loaders: dict[str, Any] = {}
        self._pending_train: dict[str, Any] | None = None
        self._module_stages: set[str] = set()
        self.skipped_files: list[str] = []
        self._said: set[str] = set()
        for split, spec in self.splits.items():
            self._configure_dataset(split, spec["dataset"])

    # ------------------------------------------------------------------ datasets
    def _is_files(self, split: str) -> bool:
        return isinstance(self.splits[split]["dataset"], ImageFileDataset)

    def _configure_dataset(self, split: str, dataset: Any) -> None:
        if not isinstance(dataset, ImageFileDataset):
            return
        dataset.skip_bad_files = self.skip_bad_files or dataset.skip_bad_files
        dataset.seed = self.seed
        if self.in_channels is not None:
            dataset.channels = int(self.in_channels)
        train_views = (
            split == "train" and self.views is not None and split not in self._module_stages
        )
        if train_views:
            dataset.set_views(self.views.crop_specs())  # type: ignore[union-attr]
        else:
            if self.image_size is None:
                raise ValueError(
                    f"data.{split}: image files need data.image_size (the evaluation size)."
                )
            dataset.set_views(None, int(self.image_size))

    def _stats(self) -> tuple[Sequence[float], Sequence[float]]:
        if self.mean is not None and self.std is not None:
            return self.mean, self.std
        ds = self.splits["train"]["dataset"]
        if hasattr(ds, "images") and hasattr(ds, "mean"):
            return ds.mean, ds.std
        return IMAGENET_MEAN, IMAGENET_STD

    def eval_transform(self) -> Callable[[Any], Any] | None:
        """The evaluation batch transform (built from ``image_size``/``mean``/``std``)."""
        if self._eval_transform is None and self.image_size is not None:
            mean, std = self._stats()
            self._eval_transform = eval_transform(int(self.image_size), mean, std)
        return self._eval_transform

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str) -> None:
        """Leave to the LightningModule the stages it transforms itself (the escape hatch)."""
        module = self.trainer.lightning_module if self.trainer is not None else None
        own = set(getattr(module, "_batch_transforms", None) or {})
        for s in sorted(own - self._module_stages):
            ours = "data.views" if s == "train" else "the data's evaluation transform"
            self._say(
                f"module:{s}",
                f"module.batch_transforms[{s!r}] is set: it replaces {ours} for the {s} stage "
                "(the DataModule yields plain images there).",
                logging.INFO,
            )
        self._module_stages = own
        for split, spec in self.splits.items():
            self._configure_dataset(split, spec["dataset"])

    def _loader(self, split: str) -> Any:
        if split in self.loaders:
            return self.loaders[split]
        spec = self.splits[split]
        trainer = self.trainer
        training = split == "train"
        loader_kwargs = {k: spec.get(k, self.loader_defaults[k]) for k in _LOADER_KEYS}
        loader = make_loader(
            spec["dataset"],
            batch_size=spec.get("batch_size", 256),
            shuffle=spec.get("shuffle", training),
            drop_last=spec.get("drop_last", training),
            seed=self.seed,
            limit=spec.get("limit"),
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            **loader_kwargs,
        )
        self.loaders[split] = loader
        return loader

    def train_dataloader(self) -> Any:
        """The training loader (a ``StatefulDataLoader``), where a restored checkpoint left it."""
        loader = self._loader("train")
        pending, self._pending_train = self._pending_train, None
        if pending is not None:
            sampler = loader.batch_sampler.sampler
            state = pending["state"]
            if state.get("_iterator_finished") or state.get("_num_yielded", 0) >= len(loader):
                sampler.set_epoch(pending["epoch"] + 1)  # saved at an epoch end
            else:
                sampler.set_epoch(pending["epoch"])
                loader.load_state_dict(state)
        return loader

    def val_dataloader(self) -> Any:
        """The validation loader (an empty list when there is no val split)."""
        return self._loader("val") if "val" in self.splits else []

    def test_dataloader(self) -> Any:
        """The test loader (an empty list when there is no test split)."""
        return self._loader("test") if "test" in self.splits else []

    def _say(self, key: str, message: str, level: int = logging.WARNING) -> None:
        if key not in self._said:
            self._said.add(key)
            log.log(level, message)

    def read_notes(self, batch: Any) -> Any:
        """Take the workers' notes out of ``batch``: log each skipped file, say conversions once."""
        if not isinstance(batch, dict) or NOTES_KEY not in batch:
            return batch
        notes = batch.pop(NOTES_KEY)
        for entry in notes["skipped"]:
            if entry not in self.skipped_files:  # each file once, however often it is drawn
                self.skipped_files.append(entry)
                log.warning("skipped unreadable image %s (skip_bad_files=True)", entry)
        if notes["converted"]:
            self._say(
                "converted",
                f"the image folder mixes grayscale and colour images; converting them to "
                f"{self.in_channels or 3} channel(s) (data.in_channels).",
            )
        if notes["upscaled"]:
            self._say(
                "upscaled",
                f"some images are smaller than the view size (smallest side {notes['smallest']} "
                "px); they are upscaled.",
            )
        return batch

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Read the workers' notes before the batch moves to the device."""
        return self.read_notes(batch)

    def _stage(self) -> str:
        trainer = self.trainer
        if trainer is None or trainer.training:
            return "train"
        if trainer.validating or trainer.sanity_checking:
            return "val"
        return "test" if trainer.testing else "predict"

    def transform_batch(self, batch: Any, stage: str = "train") -> Any:
        """Apply the views (train) or the evaluation transform (other stages) to ``batch``."""
        batch = self.read_notes(batch)
        if stage in self._module_stages:
            return batch
        if stage == "train":
            if self.views is None:
                return batch
            return self.views(batch, precropped=self._is_files("train"))
        transform = self.eval_transform()
        return transform(batch) if transform is not None else batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment on the batch's device (see :meth:`transform_batch`)."""
        return self.transform_batch(batch, self._stage())

    def state_dict(self) -> dict[str, Any]:
        """The training loader's position, the views' random streams, the skipped files.

        The position (``StatefulDataLoader.state_dict()`` and the sampler's epoch) is kept here
        as well as in Lightning's loop state because Lightning restores the DataModule before it
        first builds the training iterator, also when ``configure_optimizers`` asks for
        ``trainer.estimated_stepping_batches`` (which builds it before the loops are restored).
        """
        state: dict[str, Any] = {"skipped_files": list(self.skipped_files)}
        if self.views is not None:
            state["views"] = self.views.state_dict()
        train = self.loaders.get("train")
        if train is not None and getattr(train, "_iterator", None) is not None:
            state["train_loader"] = {
                "epoch": train.batch_sampler.sampler.epoch,
                "state": train.state_dict(),
            }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the loader position applies to the next training loader)."""
        self.skipped_files = list(state_dict.get("skipped_files", []))
        self._pending_train = state_dict.get("train_loader")
        if self.views is not None and "views" in state_dict:
            self.views.load_state_dict(state_dict["views"])

    def report(self) -> dict[str, Any]:
        """What the run summary shows about the data (skipped files)."""
        return {"skipped_files": len(self.skipped_files)}
