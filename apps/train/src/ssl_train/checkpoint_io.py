"""Reading and writing checkpoints: reads unpickle plain data only, writes are atomic.

Every checkpoint the app reads (``ssl-train resume=``, ``ssl-eval``) goes through
:func:`load_checkpoint`, which uses ``torch.load(weights_only=True)``: tensors, numbers, strings
and the containers of those, plus the classes of :data:`SAFE_GLOBALS`, and nothing else, so
opening a checkpoint from someone else cannot run code. A file holding other objects is refused
with :class:`UnsafeCheckpointError`, which names them and the opt-in flag for trusted files.

Checkpoints are written by :class:`AtomicCheckpointIO` (the Trainer's checkpoint plugin): states
are turned into plain types (OmegaConf containers into dicts and lists), written to a temporary
file next to the target, checked to load with ``weights_only=True`` and moved into place with
``os.replace``, so a write that fails part-way leaves the previous file as it was.

Example:
    >>> ckpt = load_checkpoint("outputs/<date>/<time>/checkpoints/last.ckpt")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ssl_train.config import ConfigError

__all__ = [
    "SAFE_GLOBALS",
    "AtomicCheckpointIO",
    "UnsafeCheckpointError",
    "allowed_globals",
    "load_checkpoint",
    "plain_state",
    "trainer_plugins",
    "unsafe_globals",
]

log = logging.getLogger(__name__)

SAFE_GLOBALS: tuple[Any, ...] = ()
"""Classes besides plain data that checkpoints may hold (the one allow-list of the project).

Empty: the states the app writes are plain types (tests load the checkpoints of default, NNCLR,
BYOL and hparams runs with ``weights_only=True``). Add a class only if unpickling it runs no code
beyond restoring its attributes; converting the state to plain types is preferred.
"""

_LIGHTNING_TYPE_KEYS = ("hparams_type", "datamodule_hparams_type")
"""Keys where Lightning stores the class of OmegaConf hyper-parameters (a global, not data)."""


class UnsafeCheckpointError(ConfigError):
    """A checkpoint holds objects whose unpickling could run code; the message names them."""


@contextmanager
def allowed_globals() -> Iterator[None]:
    """Allow :data:`SAFE_GLOBALS` in ``torch.load(weights_only=True)`` inside the block only."""
    with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
        yield


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"


def unsafe_globals(path: str | Path) -> list[str]:
    """The classes and functions a checkpoint's pickle names beyond what ``weights_only`` allows.

    Reads only the pickle's opcodes (nothing is unpickled).

    Returns:
        Sorted dotted names (``["builtins.getattr", "pathlib.PosixPath"]``); empty when the file
        loads with ``weights_only=True``.
    """
    allowed = {_qualname(obj) for obj in SAFE_GLOBALS}
    with allowed_globals():
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    return sorted(name for name in found if name not in allowed)


def load_checkpoint(
    path: str | Path,
    *,
    trusted: bool = False,
    map_location: Any = "cpu",
    opt_in: str = "resume_trusted=true",
) -> Any:
    """Load a checkpoint with ``torch.load(weights_only=True)`` unless the caller trusts it.

    Args:
        path: The ``.ckpt`` or ``.pt`` file.
        trusted: Load with ``weights_only=False`` (full unpickling, can run code); logged.
        map_location: Passed to ``torch.load``.
        opt_in: The flag that sets ``trusted`` in the calling command, named in the error.

    Returns:
        The loaded object.

    Raises:
        UnsafeCheckpointError: The file holds objects other than plain data (not trusted).
    """
    if trusted:
        log.warning(
            "%s: loading %s with weights_only=False; unpickling it can run any code in it, do "
            "this only for files whose origin you trust.",
            opt_in,
            path,
        )
        return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with allowed_globals():
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it holds objects that are not plain data "
            f"({_offenders(path, err)}), and unpickling them could run code. If you trust where "
            f"the file comes from, load it anyway with {opt_in}."
        ) from None


def _offenders(path: str | Path, err: Exception) -> str:
    """The unsafe globals of the file, else the first one, as torch's error names it."""
    try:
        names = unsafe_globals(path)
    except Exception:  # a legacy (non-zip) file cannot be scanned
        names = []
    if names:
        return ", ".join(names)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    return found.group(1) if found else "unknown"


def plain_state(obj: Any) -> Any:
    """``obj`` with OmegaConf containers turned into dicts and lists (recursively).

    Lightning stores OmegaConf hyper-parameters as they are (and their class under
    ``hparams_type``); as plain types the checkpoint loads with ``weights_only=True``.
    """
    from omegaconf import Container, OmegaConf

    if isinstance(obj, Container):
        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, dict):
        out = {k: plain_state(v) for k, v in obj.items()}
        return out if type(obj) is dict else type(obj)(out)
    if type(obj) in (list, tuple):
        return type(obj)(plain_state(v) for v in obj)
    return obj


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory handles (Windows)
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO: plain-data states, atomic writes, ``weights_only`` reads.

    Args:
        trusted: Read checkpoints with full unpickling (``resume_trusted=true``); logged.

    Example:
        >>> import lightning.pytorch as pl  # doctest: +SKIP
        >>> trainer = pl.Trainer(plugins=[AtomicCheckpointIO()])  # doctest: +SKIP
    """

    def __init__(self, trusted: bool = False) -> None:
        super().__init__()
        self.trusted = trusted

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to a temporary file beside ``path``, check it, then rename.

        Raises:
            UnsafeCheckpointError: A state holds objects that ``weights_only=True`` refuses
                (the previous file at ``path`` is kept).
        """
        from fsspec.utils import get_protocol

        if get_protocol(str(path)) not in ("file", "local"):
            super().save_checkpoint(checkpoint, path, storage_options)  # fsspec transaction
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options (got them).")
        target = Path(str(path).removeprefix("file://"))
        target.parent.mkdir(parents=True, exist_ok=True)
        state = {k: plain_state(v) for k, v in checkpoint.items() if k not in _LIGHTNING_TYPE_KEYS}
        # same directory, so os.replace is a rename on one filesystem (atomic on POSIX)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with tmp.open("wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            unsafe = unsafe_globals(tmp)
            if unsafe:
                raise UnsafeCheckpointError(
                    f"not writing {target}: the checkpoint state holds {', '.join(unsafe)}, "
                    "which torch.load(weights_only=True) refuses, so resume and ssl-eval could "
                    "not read it. Return plain types (tensors, numbers, str, dict, list) from "
                    "the state_dict that holds them, or add the class to SAFE_GLOBALS in "
                    "ssl_train/checkpoint_io.py if unpickling it runs no code."
                )
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load with ``weights_only=True`` unless the plugin is trusted (:func:`load_checkpoint`).

        Raises:
            FileNotFoundError: No file at ``path``.
            UnsafeCheckpointError: The file holds objects other than plain data.
        """
        if not Path(path).is_file():
            raise FileNotFoundError(f"Checkpoint file not found: {path}")
        return load_checkpoint(
            path,
            trusted=self.trusted,
            map_location=map_location or "cpu",
            opt_in="resume_trusted=true",
        )


def trainer_plugins(plugins: Any, trusted: bool) -> list[Any]:
    """The Trainer's ``plugins``: the user's (``trainer.plugins``) plus :class:`AtomicCheckpointIO`.

    Args:
        plugins: ``trainer.plugins`` from the config (``None``, one plugin or a list).
        trusted: ``resume_trusted``: read the resumed checkpoint with full unpickling.

    Raises:
        ConfigError: The config already gives a checkpoint IO plugin.
    """
    from lightning.fabric.plugins import CheckpointIO

    given = (
        [] if plugins is None else list(plugins) if isinstance(plugins, list | tuple) else [plugins]
    )
    if any(isinstance(p, CheckpointIO) for p in given):
        raise ConfigError(
            "trainer.plugins: ssl-train sets its own checkpoint IO (atomic, weights_only reads); "
            "remove the CheckpointIO plugin from trainer.plugins."
        )
    return [*given, AtomicCheckpointIO(trusted=trusted)]
