"""The whole toolkit under one import: ``import sslkit as ssl``.

``ssl.Module`` is :class:`ssl_core.Module` (and every other name of :mod:`ssl_core`),
``ssl.losses`` is :mod:`ssl_losses`, ``ssl.data`` is :mod:`ssl_data`, ``ssl.forward`` is
:mod:`ssl_forwards`, ``ssl.callbacks`` is :mod:`ssl_callbacks`, ``ssl.backbone`` is
:mod:`ssl_core.backbone`, ``ssl.optim`` is :mod:`ssl_core.optim` and ``ssl.DataModule`` is
:class:`ssl_train.data.DataModule`. Each package is imported on first use, so ``import sslkit``
itself is cheap.

Example:
    >>> import sslkit as ssl
    >>> ssl.losses.NTXEntLoss  # doctest: +SKIP
    <class 'ssl_losses.contrastive.NTXEntLoss'>
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBPACKAGES = {
    "losses": "ssl_losses",
    "data": "ssl_data",
    "forward": "ssl_forwards",
    "callbacks": "ssl_callbacks",
    "backbone": "ssl_core.backbone",
    "optim": "ssl_core.optim",
}
_OBJECTS = {"DataModule": "ssl_train.data"}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(_SUBPACKAGES[name])
    if name in _OBJECTS:
        return getattr(importlib.import_module(_OBJECTS[name]), name)
    core = importlib.import_module("ssl_core")
    if not name.startswith("_") and name in core.__all__:
        return getattr(core, name)
    raise AttributeError(
        f"module 'sslkit' has no attribute {name!r}; available: {', '.join(__dir__())}."
    )


def __dir__() -> list[str]:
    core = importlib.import_module("ssl_core")
    return sorted({*_SUBPACKAGES, *_OBJECTS, *(n for n in core.__all__ if not n.startswith("_"))})
