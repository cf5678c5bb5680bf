"""The ssl-train Hydra app: configs, run assembly, outputs and resume.

Example:
    >>> from ssl_train import compose, run  # doctest: +SKIP
    >>> result = run(compose(["trainer.max_epochs=1"]), run_dir="runs/demo")
    >>> result.metrics["val/probe_top1"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataModule",
    "RunResult",
    "compose",
    "evaluate",
    "run",
]

_EXPORTS = {
    "ConfigError": "ssl_train.config",
    "compose": "ssl_train.config",
    "RunResult": "ssl_train.runner",
    "run": "ssl_train.runner",
    "DataModule": "ssl_train.data",
    "evaluate": "ssl_train.evaluation.api",
}

if TYPE_CHECKING:
    from ssl_train.config import ConfigError, compose
    from ssl_train.data import DataModule
    from ssl_train.evaluation.api import evaluate
    from ssl_train.runner import RunResult, run


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ssl_train' has no attribute {name!r}")
