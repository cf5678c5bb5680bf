"""Configs written for stable-ssl / stable-pretraining run here through a name map.

The app's config loader rewrites every string that starts with ``stable_pretraining.`` or
``stable_ssl.`` (``_target_`` values, ``forward: stable_ssl.forward.simclr_forward``) to the
name of this toolkit's object; no module is installed under those projects' names, so the real
packages can live in the same environment.

Example:
    >>> translate("stable_pretraining.losses.NTXEntLoss")
    'ssl_losses.NTXEntLoss'
    >>> translate("stable_ssl.optim.lars.LARS")
    'ssl_core.optim.LARS'
"""

from __future__ import annotations

import pkgutil
from typing import Any

from omegaconf import DictConfig, ListConfig

FOREIGN_PACKAGES = ("stable_pretraining", "stable_ssl")

# (their module path after the package name, ours); the longest matching prefix wins.
_MODULE_MAP = (
    ("forward", "ssl_forwards"),
    ("losses", "ssl_losses"),
    ("callbacks", "ssl_callbacks"),
    ("backbone", "ssl_core.backbone"),
    ("optim.lars", "ssl_core.optim"),
    ("optim.lr_scheduler", "ssl_core.optim"),
    ("optim", "ssl_core.optim"),
    ("data.DataModule", "ssl_train.data.DataModule"),
    ("data.datasets", "ssl_data.datasets"),
    ("data.sampler", "ssl_data"),
    ("data.transforms", "ssl_data.augment"),
    ("data", "ssl_data"),
    ("", "ssl_core"),
)


def is_foreign(name: str) -> bool:
    """Whether ``name`` is a dotted name under stable-ssl's or stable-pretraining's package."""
    return name.split(".", 1)[0] in FOREIGN_PACKAGES and "." in name


def _candidates(name: str) -> list[str]:
    rest = name.split(".", 1)[1]
    for theirs, ours in _MODULE_MAP:
        if not theirs:
            return [f"{ours}.{rest}"]
        if rest == theirs:
            return [ours]
        if rest.startswith(theirs + "."):
            tail = rest[len(theirs) + 1 :]
            if ours == "ssl_forwards" and not tail.endswith("_forward"):
                # stable-ssl also names forwards without the suffix (forward.simclr)
                return [f"{ours}.{tail}_forward", f"{ours}.{tail}"]
            return [f"{ours}.{tail}"]
    return [name]  # pragma: no cover - the empty prefix above always matches


def translate(name: str) -> str:
    """Return our dotted name for a stable-ssl / stable-pretraining one (others unchanged).

    Args:
        name: A dotted name such as ``"stable_pretraining.forward.simclr_forward"``.

    Returns:
        The name of this toolkit's object (the first candidate that imports, else the first
        candidate, so the config check reports it with the valid names).
    """
    if not is_foreign(name):
        return name
    candidates = _candidates(name)
    if len(candidates) > 1:
        for candidate in candidates:
            try:
                pkgutil.resolve_name(candidate)
            except Exception:
                continue
            return candidate
    return candidates[0]


def translate_config(node: Any) -> None:
    """Rewrite, in place, every foreign dotted-name string below ``node`` (interpolations kept)."""
    if isinstance(node, DictConfig):
        keys: list[Any] = list(node.keys())
    elif isinstance(node, ListConfig):
        keys = list(range(len(node)))
    else:
        return
    for key in keys:
        child = node._get_node(key)
        if isinstance(child, DictConfig | ListConfig):
            translate_config(child)
        elif child is not None and not child._is_interpolation():
            value = child._value()
            if isinstance(value, str) and is_foreign(value):
                node[key] = translate(value)
