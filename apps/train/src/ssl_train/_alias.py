"""Lazy alias modules: ``stable_pretraining.losses`` and ``stable_ssl.losses`` resolve to ours.

An alias module forwards attribute access (PEP 562 ``__getattr__``) to one or more real modules,
importing them on first use, so ``import stable_ssl`` stays cheap and the dotted names of the
public stable-ssl / stable-pretraining API (``stable_pretraining.losses.NTXEntLoss``) resolve in
Hydra configs and in ``from ... import ...`` statements alike.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and (name == err.name or name.startswith(err.name + ".")):
            return None
        raise


def lazy_alias(
    alias: str,
    targets: Sequence[str],
    submodules: Mapping[str, Sequence[str] | str] | None = None,
    suffixes: Sequence[str] = (),
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Build the ``__getattr__`` and ``__dir__`` of an alias module.

    Lookup order for ``alias.name``: ``submodules[name]`` (the first importable of the listed
    module names), then ``getattr(target, name)`` for each target, then ``getattr(target,
    name + suffix)`` for each suffix (``forward.simclr`` -> ``simclr_forward``), then the module
    ``target.name``.

    Args:
        alias: The alias module's ``__name__`` (for error messages).
        targets: Real modules to forward to, in priority order.
        submodules: Extra names mapped to (lists of candidate) real module names.
        suffixes: Name suffixes tried after the plain name.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the alias module.

    Example:
        >>> __getattr__, __dir__ = lazy_alias(__name__, ["ssl_losses"])  # doctest: +SKIP
    """
    subs = {k: [v] if isinstance(v, str) else list(v) for k, v in (submodules or {}).items()}

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in subs:
            for candidate in subs[name]:
                module = _import(candidate)
                if module is not None:
                    return module
        modules = [m for m in (_import(t) for t in targets) if m is not None]
        found = [getattr(m, name) for m in modules if hasattr(m, name)]
        for value in found:
            if not isinstance(value, ModuleType):
                return value
        for suffix in suffixes:  # before submodules: forward.simclr is simclr_forward
            for module in modules:
                if hasattr(module, name + suffix):
                    return getattr(module, name + suffix)
        if found:
            return found[0]
        for target in targets:
            module = _import(f"{target}.{name}")
            if module is not None:
                return module
        raise AttributeError(
            f"module {alias!r} (an alias of {', '.join(targets)}) has no attribute {name!r}; "
            f"available: {', '.join(__dir__()) or 'nothing (is the package installed?)'}."
        )

    def __dir__() -> list[str]:
        names = set(subs)
        for target in targets:
            module = _import(target)
            if module is not None:
                names.update(
                    getattr(module, "__all__", None)
                    or [n for n in vars(module) if not n.startswith("_")]
                )
        return sorted(names)

    return __getattr__, __dir__
