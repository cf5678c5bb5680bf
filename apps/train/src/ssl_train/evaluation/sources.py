"""Where a backbone to evaluate comes from: a run directory, a checkpoint or a ``backbone.pt``.

A run directory written by ``ssl-train`` holds ``config.yaml`` (the resolved config, which names
the backbone's architecture), ``backbone.pt`` (the exported ``state_dict``; for teacher/student
methods the EMA teacher) and ``checkpoints/*.ckpt`` (Lightning checkpoints of the whole module).

Weights are read with ``torch.load(weights_only=True)`` (:mod:`ssl_train.checkpoint_io`), but a
run's ``config.yaml`` is code: its ``_target_`` entries are imported and called to rebuild the
backbone. With an explicit architecture (``arch=``) no ``config.yaml`` is read at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ssl_train.checkpoint_io import UnsafeCheckpointError, load_checkpoint

__all__ = [
    "EvaluationError",
    "Source",
    "backbone_node",
    "backbone_state_dict",
    "build_backbone",
    "load_backbone",
    "resolve_source",
]

_WRAPPER = "ssl_core.TeacherStudentWrapper"


class EvaluationError(ValueError):
    """An evaluation request that cannot be served; the message names the problem and the fix."""


@dataclass(frozen=True)
class Source:
    """A resolved backbone source.

    Attributes:
        path: The file holding the weights (``backbone.pt`` or a ``.ckpt``).
        kind: ``"checkpoint"`` (a Lightning checkpoint) or ``"state_dict"`` (an exported
            backbone).
        run_dir: The run directory the file belongs to, when there is one.
        config: The run's resolved configuration (rebuilds the architecture), when known.
    """

    path: Path
    kind: str
    run_dir: Path | None
    config: DictConfig | None


def _load_config(path: Path) -> DictConfig:
    if not path.is_file():
        raise EvaluationError(
            f"config file {path} does not exist; pass config=<run dir>/config.yaml of the run "
            "that trained the backbone."
        )
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise EvaluationError(f"{path} is not a mapping; pass the run's config.yaml.")
    return cfg


def _is_checkpoint(path: Path) -> bool:
    return path.suffix == ".ckpt"


def resolve_source(
    source: str | Path, config: str | Path | None = None, *, read_config: bool = True
) -> Source:
    """Find the weights file and the run configuration of ``source``.

    Args:
        source: A run directory (uses its ``backbone.pt``, else ``checkpoints/last.ckpt``), a
            Lightning ``.ckpt`` file, or an exported ``backbone.pt``.
        config: The run's ``config.yaml``, needed when ``source`` is a file outside its run
            directory; default: the ``config.yaml`` of the run directory the file belongs to.
        read_config: Look for and read the run's ``config.yaml``; ``False`` when the caller
            gives the architecture (the source's ``config`` is then ``None``).

    Returns:
        The resolved :class:`Source`.

    Raises:
        EvaluationError: The path does not exist, is a directory that is no run directory, or
            no configuration can be found.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise EvaluationError(
            f"source {str(source)!r} does not exist; pass a run directory written by ssl-train "
            "(with config.yaml and backbone.pt or checkpoints/last.ckpt), a .ckpt file or an "
            "exported backbone.pt."
        )
    if path.is_dir():
        run_dir = path
        weights = path / "backbone.pt"
        if not weights.is_file():
            weights = path / "checkpoints" / "last.ckpt"
        if not weights.is_file() or (read_config and not (path / "config.yaml").is_file()):
            raise EvaluationError(
                f"{path} is not a run directory: it needs config.yaml and backbone.pt or "
                "checkpoints/last.ckpt (what ssl-train writes); pass the run directory itself, a "
                ".ckpt file or a backbone.pt with config=<run dir>/config.yaml."
            )
    else:
        weights = path
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    kind = "checkpoint" if _is_checkpoint(weights) else "state_dict"
    if not read_config:
        return Source(weights.resolve(), kind, run_dir.resolve(), None)
    config_path = Path(config).expanduser() if config is not None else run_dir / "config.yaml"
    if config is None and not config_path.is_file():
        raise EvaluationError(
            f"no config.yaml next to {weights} (looked in {run_dir}); the architecture cannot be "
            "rebuilt. Pass arch=<backbone group> (e.g. arch=small_resnet) or "
            "config=<run dir>/config.yaml of the run that trained it."
        )
    cfg = _load_config(config_path)
    return Source(weights.resolve(), kind, run_dir.resolve(), cfg)


def backbone_node(cfg: DictConfig) -> dict[str, Any]:
    """The backbone's ``_target_`` node of a run configuration, without any EMA wrapper.

    Reads the top-level ``backbone`` section (ssl-train configs) or, for configs in the public
    stable-pretraining shape, ``module.backbone`` (a ``TeacherStudentWrapper`` node gives its
    ``student``).

    Raises:
        EvaluationError: The configuration names no backbone.
    """
    node: Any = cfg.get("backbone")
    if node is None and cfg.get("module") is not None:
        node = cfg.module.get("backbone")
    if node is None:
        raise EvaluationError(
            "the run's config has neither a 'backbone' nor a 'module.backbone' section; pass "
            "config=<the run's config.yaml> or evaluate with backbone=pixels."
        )
    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    while isinstance(plain, dict) and plain.get("_target_") == _WRAPPER:
        plain = plain.get("student")
    if not isinstance(plain, dict) or "_target_" not in plain:
        raise EvaluationError(
            f"the run's backbone section is not a _target_ node ({plain!r}); pass a config whose "
            "'backbone' is e.g. {_target_: ssl_core.backbone.SmallResNet, in_channels: 1}."
        )
    return plain


def build_backbone(node: dict[str, Any]) -> nn.Module:
    """Instantiate a backbone node (Hydra ``_target_``), with pretrained ``weights`` switched off.

    Returns:
        The module, in eval mode.
    """
    from hydra.utils import instantiate

    node = dict(node)
    if "weights" in node:
        node["weights"] = None
    net = instantiate(node, _convert_="all")
    if not isinstance(net, nn.Module):
        raise EvaluationError(f"backbone {node['_target_']} built a {type(net).__name__}.")
    return net.eval()


def _read(path: Path, trusted: bool) -> Any:
    try:
        return load_checkpoint(path, trusted=trusted, opt_in="ssl-eval --trust-checkpoint")
    except UnsafeCheckpointError as err:
        raise EvaluationError(str(err)) from None


def backbone_state_dict(source: Source, *, trusted: bool = False) -> dict[str, torch.Tensor]:
    """Read the backbone's ``state_dict`` from ``source`` with ``weights_only=True``.

    A Lightning checkpoint gives its ``backbone.*`` weights; when the backbone is a
    ``TeacherStudentWrapper`` (BYOL) the EMA teacher's, as in the run's exported ``backbone.pt``.

    Args:
        source: The resolved source.
        trusted: Unpickle the file fully (``ssl-eval --trust-checkpoint``); logged.

    Raises:
        EvaluationError: The file holds no backbone weights, or objects other than plain data
            (not trusted).
    """
    if source.kind == "checkpoint":
        ckpt = _read(source.path, trusted)
        state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise EvaluationError(
                f"{source.path} has no 'state_dict'; pass a Lightning checkpoint written by "
                "ssl-train or an exported backbone.pt."
            )
        for prefix in ("backbone.teacher.", "backbone."):
            found = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if found:
                return found
        raise EvaluationError(
            f"{source.path} has no backbone.* weights (the module needs a submodule named "
            "'backbone'); pass the run's backbone.pt instead."
        )
    state = _read(source.path, trusted)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EvaluationError(
            f"{source.path} is not a state_dict of tensors; pass a backbone.pt written by "
            "ssl-train (torch.save(net.state_dict())) or a .ckpt file."
        )
    return state


def load_backbone(
    source: str | Path,
    config: str | Path | None = None,
    *,
    arch: dict[str, Any] | None = None,
    trusted: bool = False,
) -> tuple[nn.Module, Source]:
    """Rebuild a trained backbone from a run directory, a ``.ckpt`` or a ``backbone.pt``.

    Args:
        source: See :func:`resolve_source`.
        config: The run's ``config.yaml`` when ``source`` is a file outside its run directory.
        arch: The backbone's ``_target_`` node; when given, no ``config.yaml`` is read.
        trusted: Unpickle the weights file fully (see :func:`backbone_state_dict`).

    Returns:
        ``(backbone in eval mode, resolved source)``.

    Example:
        >>> net, src = load_backbone("outputs/2025-01-01/12-00-00")  # doctest: +SKIP
    """
    if arch is not None and config is not None:
        raise EvaluationError(
            "pass either arch= (the architecture by name) or config= (a run's config.yaml), "
            "not both."
        )
    resolved = resolve_source(source, config, read_config=arch is None)
    node = arch if arch is not None else backbone_node(resolved.config)  # type: ignore[arg-type]
    state = backbone_state_dict(resolved, trusted=trusted)  # before building: refuse early
    net = build_backbone(node)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise EvaluationError(
            f"the weights in {resolved.path} do not fit the architecture "
            f"({node['_target_']}): {err}. Pass the matching arch= or config=<the config.yaml of "
            "the run that wrote them>."
        ) from None
    return net.eval(), resolved
