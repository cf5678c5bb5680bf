"""Resolution of dotted import strings (``"package.module.name"`` or ``"package.module:name"``)."""

from __future__ import annotations

import pkgutil
from typing import Any


def import_object(path: str) -> Any:
    """Import the object named by a dotted path with :func:`pkgutil.resolve_name`.

    Args:
        path: ``"package.module.attribute"`` or ``"package.module:attribute"``.

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
    try:
        return pkgutil.resolve_name(path.strip())
    except (ImportError, AttributeError, ValueError) as error:
        if isinstance(error, ImportError) and error.name and not path.startswith(error.name):
            raise  # the module exists but one of its own imports failed: show that error
        raise ImportError(
            f"Cannot import {path!r} ({error}). Check the spelling and that the package that "
            "defines it is installed; write it as 'package.module.name'."
        ) from None
