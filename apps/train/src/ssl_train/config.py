"""Composing, checking and resolving the app's configuration.

The configuration has two layers:

* the app's own settings (``seed``, ``resume``, ``checkpoint``, ``loggers``, ...), checked
  against the dataclass schema :class:`AppConfig`; keys left out take the schema's defaults, so
  a standalone public-style config (``module`` / ``trainer`` / ``data`` only) runs as is;
* the objects (``data``, ``module``, ``callbacks``, ``trainer``, ``backbone``): Hydra nodes with
  ``_target_``. Each node's keys are checked against the signature of its target, so a typo
  fails before anything is built, with the key's full path and the valid names.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

CONFIG_MODULE = "ssl_train.conf"
GROUPS = ("method", "data", "backbone", "trainer", "callbacks")
_HYDRA_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})


class ConfigError(ValueError):
    """A configuration problem; the message names the key's path and the fix."""


@dataclass
class CheckpointConfig:
    """Checkpointing: ``last.ckpt`` and the best checkpoint by a monitored metric."""

    every_n_steps: int | None = 200
    monitor: str | None = None
    mode: str = "max"


@dataclass
class LoggersConfig:
    """Loggers; CSV is always on (it feeds the plots), TensorBoard and W&B are options."""

    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "ssl-train"
    wandb_offline: bool = False


@dataclass
class AppConfig:
    """The app's settings; object sections (``module`` ...) are checked against their targets."""

    seed: int = 0
    resume: str | None = None
    resume_trusted: bool = False
    run_dir: str | None = None
    embedding_dim: Any = None
    progress_bar: str = "rich"
    export_backbone: bool = True
    plots: bool = True
    summary: bool = True
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    loggers: LoggersConfig = field(default_factory=LoggersConfig)
    data: Any = None
    backbone: Any = None
    module: Any = None
    callbacks: Any = None
    trainer: Any = None


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_dataclass_keys(node: Any, schema: Any, path: str) -> None:
    if not isinstance(node, DictConfig):
        return
    valid = {f.name: f for f in fields(schema)}
    for key in node.keys():
        key = str(key)
        full = f"{path}{key}"
        if key not in valid:
            raise ConfigError(
                f"Unknown config key '{full}'.{_suggest(key, sorted(valid))} Valid keys at "
                f"{path.rstrip('.') or 'the top level'}: {', '.join(sorted(valid))}."
            )
        default = valid[key].default_factory  # type: ignore[misc]
        if callable(default):
            sub = default()
            if is_dataclass(sub):
                _check_dataclass_keys(node._get_node(key), type(sub), f"{full}.")


def apply_schema(cfg: DictConfig) -> DictConfig:
    """Check the app-level keys and fill in defaults for those left out.

    Args:
        cfg: The composed configuration.

    Returns:
        A new configuration with every :class:`AppConfig` key present.

    Raises:
        ConfigError: An unknown key (the message gives its path and the valid keys).
    """
    _check_dataclass_keys(cfg, AppConfig, "")
    merged = OmegaConf.merge(OmegaConf.structured(AppConfig), cfg)
    OmegaConf.set_struct(merged, False)
    return merged  # type: ignore[return-value]


def locate(path: str, where: str) -> Any:
    """Import the object at dotted ``path`` or raise a :class:`ConfigError` naming ``where``."""
    import pkgutil

    from hydra.utils import get_object

    try:
        return get_object(path)
    except Exception as err:
        module_path, _, name = path.rpartition(".")
        hint = ""
        try:
            parent = pkgutil.resolve_name(module_path) if module_path else None
        except Exception:
            parent = None
        if parent is not None:
            names = sorted(n for n in dir(parent) if not n.startswith("_"))
            hint = f"{_suggest(name, names)} {module_path} has: {', '.join(names)}."
        raise ConfigError(f"{where}: cannot import {path!r} ({err}).{hint}") from None


def _signature_params(target: Any) -> tuple[set[str], bool] | None:
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    names = {
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    return names, var_kw


def check_targets(node: Any, path: str) -> None:
    """Check every ``_target_`` node below ``node``: importable, and no unknown arguments.

    Args:
        node: A (resolved) config node.
        path: Its path, for messages (``"module"``).

    Raises:
        ConfigError: An unimportable target or an argument its signature does not accept.
    """
    if isinstance(node, ListConfig):
        for i, _item in enumerate(node):
            check_targets(node._get_node(i), f"{path}[{i}]")
        return
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        target = locate(str(node["_target_"]), f"{path}._target_")
        params = _signature_params(target)
        if params is not None:
            names, var_kw = params
            if not var_kw:
                for key in node.keys():
                    key = str(key)
                    if key not in _HYDRA_KEYS and key not in names:
                        raise ConfigError(
                            f"Unknown config key '{path}.{key}': {node['_target_']} takes no "
                            f"argument {key!r}.{_suggest(key, sorted(names))} Valid: "
                            f"{', '.join(sorted(names - {'self'}))}."
                        )
    for key in node.keys():
        if str(key) != "_target_":
            check_targets(node._get_node(key), f"{path}.{key}")


def trainer_kwargs_check(trainer_cfg: DictConfig) -> None:
    """Check the keys of the ``trainer`` section against ``lightning.Trainer``."""
    import lightning.pytorch as pl

    names, _ = _signature_params(pl.Trainer.__init__) or (set(), True)
    for key in trainer_cfg.keys():
        key = str(key)
        if key not in names and key not in _HYDRA_KEYS:
            raise ConfigError(
                f"Unknown config key 'trainer.{key}': lightning.Trainer takes no argument "
                f"{key!r}.{_suggest(key, sorted(names))}"
            )


def app_overrides(overrides: list[str]) -> list[str]:
    """Turn ``key=value`` overrides of app settings into ``++key=value``.

    The app's settings (``seed``, ``resume``, ``checkpoint.every_n_steps``, ...) have schema
    defaults, so a standalone config need not list them; ``++`` sets them whether or not the
    composed config has the key.

    Example:
        >>> app_overrides(["progress_bar=none", "trainer.max_epochs=1"])
        ['++progress_bar=none', 'trainer.max_epochs=1']
    """
    app_keys = {f.name for f in fields(AppConfig)} - {
        "data",
        "backbone",
        "module",
        "callbacks",
        "trainer",
        "embedding_dim",
    }
    out = []
    for item in overrides:
        head = item.split("=", 1)[0]
        if "=" in item and head[:1] not in "+~" and head.split(".")[0] in app_keys:
            item = "++" + item
        out.append(item)
    return out


_MODULE_ONLY_KEYS = frozenset({"module", "callbacks"})


def module_only_config(config_dir: str | Path | None, config_name: str) -> DictConfig | None:
    """The config ``config_dir/config_name.yaml`` if it holds only ``module`` (+ ``callbacks``).

    Such configs are the docs' examples; anything else gives ``None``.

    Such a config runs on top of the app's default data, trainer and callbacks (see
    :func:`merge_module_only`), so plain overrides such as ``data=imagefolder`` apply.
    """
    if config_dir is None:
        return None
    path = Path(config_dir).expanduser() / f"{config_name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        return None
    user = OmegaConf.load(path)
    if not isinstance(user, DictConfig) or "module" not in user:
        return None
    return user if set(map(str, user.keys())) <= _MODULE_ONLY_KEYS else None


def merge_module_only(cfg: DictConfig, user: DictConfig) -> DictConfig:
    """Put a module-only config on top of the app's composed default config.

    The user's ``module`` replaces the default method's module (its ``backbone``, when it is a
    ``_target_`` node, becomes ``backbone``, so ``${embedding_dim}`` follows it); the user's
    callbacks (a dict, or a list as in the public docs) are added to the default ones.
    """
    OmegaConf.set_struct(cfg, False)
    cfg.module = user.module
    backbone = user.module.get("backbone")
    if isinstance(backbone, DictConfig) and "_target_" in backbone:
        cfg.backbone = backbone  # embedding_dim and the exported backbone follow the user's
    extra = user.get("callbacks")
    if extra:
        if isinstance(extra, ListConfig):
            extra = OmegaConf.create({f"config_{i}": node for i, node in enumerate(extra)})
        cfg.callbacks = OmegaConf.merge(cfg.get("callbacks") or OmegaConf.create({}), extra)
    return cfg


def compose(
    overrides: list[str] | None = None,
    config_name: str = "config",
    config_dir: str | Path | None = None,
) -> DictConfig:
    """Compose a configuration as ``ssl-train`` would, without running anything.

    Args:
        overrides: Command-line style overrides (``["method=byol", "trainer.max_epochs=2"]``).
        config_name: The config to start from (``"config"``, or ``"examples/simclr_spt"``).
        config_dir: An external config directory (``--config-path``); default: the packaged one.

    Returns:
        The composed configuration (interpolations unresolved).

    Example:
        >>> cfg = compose(["method=byol"])  # doctest: +SKIP
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module

    user = module_only_config(config_dir, config_name)
    if user is not None:
        return merge_module_only(compose(overrides), user)
    if config_dir is not None:
        ctx = initialize_config_dir(str(Path(config_dir).resolve()), version_base="1.3")
    else:
        ctx = initialize_config_module(CONFIG_MODULE, version_base="1.3")
    with ctx:
        return hydra_compose(config_name, overrides=app_overrides(list(overrides or [])))


def resolve_resume(resume: str) -> tuple[Path, Path]:
    """Return ``(run_dir, checkpoint)`` for ``resume=<run dir or checkpoint file>``.

    Raises:
        ConfigError: Nothing to resume from at that path.
    """
    path = Path(resume).expanduser()
    if path.is_dir():
        ckpt = path / "checkpoints" / "last.ckpt"
        if not ckpt.is_file():
            raise ConfigError(
                f"resume={resume}: no checkpoints/last.ckpt in that directory; pass a run "
                "directory written by ssl-train or a .ckpt file."
            )
        return path, ckpt
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run_dir, path
    raise ConfigError(f"resume={resume}: no such run directory or checkpoint file.")


def resume_config(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> DictConfig:
    """The configuration of a resumed run: the saved one, with this call's value overrides.

    Args:
        cfg: The configuration composed for this call (used when the run saved none).
        run_dir: The run being resumed.
        overrides: This call's command-line overrides; ``key=value`` ones are applied to the
            saved configuration, config-group choices must match the saved run.

    Raises:
        ConfigError: A group override (``method=...``) that differs from the saved run.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return cfg
    saved = OmegaConf.load(saved_path)
    assert isinstance(saved, DictConfig)
    OmegaConf.set_struct(saved, False)
    choices_path = run_dir / "choices.yaml"
    choices = OmegaConf.load(choices_path) if choices_path.is_file() else OmegaConf.create({})
    parser = OverridesParser.create()
    for override in parser.parse_overrides(list(overrides)):
        key = override.key_or_group
        if key in ("resume", "run_dir") or key.startswith("hydra"):
            continue
        value = override.value()
        if key in GROUPS:
            if key in choices and str(choices[key]) != str(value):
                raise ConfigError(
                    f"resume: the run used {key}={choices[key]}, this call says {key}={value}; "
                    "start a new run to change a config group."
                )
            continue
        if override.is_delete():
            OmegaConf.update(saved, key, None, force_add=True)
        else:
            OmegaConf.update(saved, key, value, force_add=True)
    saved.resume = cfg.resume
    saved.resume_trusted = bool(cfg.get("resume_trusted", False))
    return saved
