"""Parts of a run built from the config: callbacks (and the checks on them), loggers, bar."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig

from ssl_train.config import ConfigError


def instantiate(node: Any, path: str) -> Any:
    """Instantiate a config node; Hydra's wrapper is removed from our own errors."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, _convert_="all")
    except InstantiationException as err:
        cause = err.__cause__ or err
        if isinstance(cause, ConfigError | ImportError | OSError | RuntimeError | LookupError):
            raise cause from None
        raise ConfigError(f"{path}: {err}") from None


def callback_nodes(cfg: DictConfig) -> list[tuple[str, Any]]:
    """The ``(path, node)`` of every callback under ``callbacks`` and ``trainer.callbacks``."""
    nodes: list[tuple[str, Any]] = []
    for section, container in (
        ("callbacks", cfg.get("callbacks")),
        ("trainer.callbacks", (cfg.get("trainer") or {}).get("callbacks")),
    ):
        if container is None:
            continue
        if isinstance(container, DictConfig):
            nodes += [(f"{section}.{k}", v) for k, v in container.items() if v is not None]
        elif isinstance(container, ListConfig):
            nodes += [(f"{section}[{i}]", v) for i, v in enumerate(container) if v is not None]
        else:
            raise ConfigError(f"{section} must be a list or a dict of callback configs.")
    return nodes


def _callback_line(cfg: DictConfig, name: str, node: str) -> str:
    """The config line that adds a callback, in the form the config's ``callbacks`` uses."""
    if isinstance(cfg.get("callbacks"), ListConfig):
        return f"callbacks:\n  - {node}"
    return f"callbacks:\n  {name}: {node}"


def check_required_callbacks(cfg: DictConfig, module: Any, callbacks: Sequence[Any]) -> None:
    """Refuse a module whose teacher/student wrapper no callback updates.

    The app adds no callback by method: a method config declares what it needs.

    Raises:
        ConfigError: A ``TeacherStudentWrapper`` without a ``TeacherStudentCallback``; the
            message gives the config line to add.
    """
    import ssl_callbacks
    from ssl_core import TeacherStudentWrapper

    has_wrapper = any(isinstance(m, TeacherStudentWrapper) for m in module.modules())
    if has_wrapper and not any(
        isinstance(c, ssl_callbacks.TeacherStudentCallback) for c in callbacks
    ):
        line = _callback_line(
            cfg, "teacher_ema", "{_target_: ssl_callbacks.TeacherStudentCallback}"
        )
        raise ConfigError(
            "The module holds an ssl_core.TeacherStudentWrapper, but no "
            "ssl_callbacks.TeacherStudentCallback updates its EMA teacher. Add to the method "
            f"config:\n{line}"
        )


def missing_queue_error(cfg: DictConfig, err: LookupError) -> ConfigError | None:
    """Turn ``find_queue``'s LookupError into the config line that adds the queue."""
    found = re.search(r"queue(?: named)? '([^']+)'", str(err))
    if found is None:
        return None
    key = found.group(1)
    node = f"{{_target_: ssl_callbacks.OnlineQueue, key: {key}, queue_length: 8192, dim: <D>}}"
    return ConfigError(f"{err}\nIn the method config:\n{_callback_line(cfg, key, node)}")


def loggers(cfg: DictConfig, run_dir: Path, extra: Any) -> list[Any]:
    """Lightning's CSV logger, plus TensorBoard, W&B and ``trainer.logger`` when configured."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    # One CSV version per (re)start: csv/version_N/metrics.csv; run_dir/metrics.csv merges them.
    loggers: list[Any] = [CSVLogger(save_dir=str(run_dir), name="csv")]
    if cfg.loggers.tensorboard:
        if not (
            importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX")
        ):
            raise ConfigError(
                "loggers.tensorboard=true needs TensorBoard: "
                "uv pip install 'ssl-train[tensorboard]'."
            )
        loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=""))
    if cfg.loggers.wandb:
        if importlib.util.find_spec("wandb") is None:
            raise ConfigError("loggers.wandb=true needs wandb: uv pip install 'ssl-train[wandb]'.")
        loggers.append(
            WandbLogger(
                project=cfg.loggers.wandb_project,
                save_dir=str(run_dir),
                offline=cfg.loggers.wandb_offline,
            )
        )
    if extra not in (None, False, True):
        items = extra if isinstance(extra, ListConfig) else [extra]
        for i, node in enumerate(items):
            loggers.append(instantiate(node, f"trainer.logger[{i}]"))
    return loggers


def _without_version(bar_class: type) -> type:
    """The bar without Lightning's ``v_num`` (the CSV logger's version: no training signal)."""

    class Bar(bar_class):  # type: ignore[misc, valid-type]
        def get_metrics(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
            metrics = super().get_metrics(trainer, pl_module)
            metrics.pop("v_num", None)
            return metrics

    Bar.__name__ = bar_class.__name__
    return Bar


def progress_bar(kind: str) -> Any:
    """Lightning's rich or tqdm progress bar, or ``None`` for ``progress_bar=none``."""
    if kind == "rich" and importlib.util.find_spec("rich") is not None:
        from lightning.pytorch.callbacks import RichProgressBar

        return _without_version(RichProgressBar)()
    if kind in ("tqdm", "rich"):
        from lightning.pytorch.callbacks import TQDMProgressBar

        return _without_version(TQDMProgressBar)()
    if kind == "none":
        return None
    raise ConfigError(f"progress_bar={kind!r}: use one of rich, tqdm, none.")
