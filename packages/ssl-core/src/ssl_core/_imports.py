"""Resolution of dotted import strings ("package.module.name" or "package.module:name")."""

from __future__ import annotations

import importlib
from typing import Any


def import_object(path: str) -> Any:
    """Import the object named by a dotted path.

    Args:
        path: ``"package.module.attribute"`` or ``"package.module:attribute"``; nested attributes
            (``"package.Class.method"``) are followed.

    Returns:
        The imported object.

    Raises:
        ImportError: Nothing importable is found under ``path``; the message names the path.

    Example:
        >>> import_object("math.sqrt")(4.0)
        2.0
    """
    if not isinstance(path, str) or not path.strip():
        raise ImportError(
            f"Expected a dotted import path like 'package.module.name', got {path!r}."
        )
    path = path.strip()
    if ":" in path:
        module_name, _, attr_path = path.partition(":")
        parts = [module_name, *attr_path.split(".")]
        split_points = [1]
    else:
        parts = path.split(".")
        split_points = list(range(len(parts) - 1, 0, -1))
    last_error: Exception | None = None
    for split in split_points:
        module_name = ".".join(parts[:split])
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError as error:
            if error.name is not None and not module_name.startswith(error.name):
                raise  # the module exists but one of its own imports failed: show that error
            last_error = error
            continue
        try:
            for attribute in parts[split:]:
                obj = getattr(obj, attribute)
        except AttributeError as error:
            last_error = error
            continue
        return obj
    raise ImportError(
        f"Cannot import {path!r} ({last_error}). Check the spelling and that the package that "
        "defines it is installed; write it as 'package.module.name'."
    )
