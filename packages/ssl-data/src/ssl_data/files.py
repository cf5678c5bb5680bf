"""Finding image files: class sub-folders, a flat folder, or a CSV/TXT file list.

Only paths (and integer labels) are kept in memory; nothing is opened here.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ssl_data.errors import DatasetUnavailableError

__all__ = ["IMAGE_EXTENSIONS", "FileList", "find_split", "read_file_list", "scan_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
"""File name endings read as images (case-insensitive)."""


@dataclass(frozen=True)
class FileList:
    """Image paths with optional integer labels and class names.

    Attributes:
        paths: Image file paths.
        labels: One label per path, or ``None`` for an unlabeled set.
        classes: Class names (label ``i`` is ``classes[i]``), or ``None``.
    """

    paths: tuple[str, ...]
    labels: tuple[int, ...] | None = None
    classes: tuple[str, ...] | None = None

    def __len__(self) -> int:
        return len(self.paths)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _images_below(folder: Path) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if _is_image(f)]
    return found


def find_split(root: str | os.PathLike[str], split: str | None) -> Path:
    """The folder of ``split`` inside ``root``, or ``root`` itself without split sub-folders.

    ``val`` and ``test`` stand in for each other (``root/val`` serves ``split="test"``).

    Raises:
        DatasetUnavailableError: ``root`` does not exist.
    """
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetUnavailableError(
            f"image folder {path} does not exist; pass root=/folder/of/images (data.root=... in "
            "the app)."
        )
    if split is None:
        return path
    aliases = {"val": ("val", "test", "validation"), "test": ("test", "val", "validation")}
    for name in aliases.get(split, (split,)):
        if (path / name).is_dir():
            return path / name
    return path


def scan_folder(root: str | os.PathLike[str], labeled: bool | None = None) -> FileList:
    """List the images under ``root``: one sub-folder per class, or a flat unlabeled folder.

    Args:
        root: The folder.
        labeled: ``True``: require class sub-folders; ``False``: every image below ``root``,
            unlabeled; ``None``: class sub-folders when ``root`` has sub-folders and no images of
            its own, else flat.

    Returns:
        The sorted file list (classes in sorted folder-name order, as torchvision's
        ``ImageFolder``).

    Raises:
        DatasetUnavailableError: ``root`` is missing, holds no images, or a class folder is empty.
    """
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetUnavailableError(
            f"image folder {path} does not exist; pass root=/folder/of/images (data.root=...)."
        )
    entries = sorted(os.scandir(path), key=lambda e: e.name)
    subdirs = [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]
    own_images = [e.name for e in entries if e.is_file() and _is_image(e.name)]
    if labeled is None:
        labeled = bool(subdirs) and not own_images
    if not labeled:
        paths = _images_below(path)
        if not paths:
            raise DatasetUnavailableError(
                f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {path}; put image files in it "
                "(or one sub-folder per class)."
            )
        return FileList(tuple(paths))
    if not subdirs:
        raise DatasetUnavailableError(
            f"{path} has no class sub-folders; use one sub-folder per class, or labeled=False "
            "for a flat folder of unlabeled images."
        )
    paths, labels = [], []
    for label, name in enumerate(subdirs):
        files = _images_below(path / name)
        if not files:
            raise DatasetUnavailableError(
                f"class folder {path / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                "add images or remove the folder."
            )
        paths += files
        labels += [label] * len(files)
    return FileList(tuple(paths), tuple(labels), tuple(subdirs))


def read_file_list(
    list_file: str | os.PathLike[str], root: str | os.PathLike[str] | None = None
) -> FileList:
    """Read a file list: one image path per line, optionally followed by a label.

    TXT lines are ``path`` or ``path label`` (whitespace-separated); CSV rows are ``path`` or
    ``path,label`` (a first row ``path[,label]`` is a header and skipped). Relative paths are
    relative to ``root`` (default: the list file's folder). Labels may be integers or class
    names (then sorted into integer ids).

    Raises:
        DatasetUnavailableError: the list file is missing or empty, or names missing files (the
            message lists the first few and how many).
    """
    list_path = Path(list_file).expanduser()
    if not list_path.is_file():
        raise DatasetUnavailableError(f"file list {list_path} does not exist.")
    base = Path(root).expanduser() if root is not None else list_path.parent
    rows: list[list[str]] = []
    with list_path.open(newline="") as fh:
        if list_path.suffix.lower() == ".csv":
            rows = [r for r in csv.reader(fh) if r and r[0].strip()]
            if rows and rows[0][0].strip().lower() in ("path", "file", "filename", "image"):
                rows = rows[1:]
        else:
            rows = [line.split() for line in fh if line.strip() and not line.startswith("#")]
    if not rows:
        raise DatasetUnavailableError(f"file list {list_path} names no images.")
    paths = [str(p if (p := Path(r[0].strip())).is_absolute() else base / p) for r in rows]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = ", ".join(missing[:5])
        raise DatasetUnavailableError(
            f"file list {list_path} names {len(missing)} missing file(s): {shown}"
            f"{' ...' if len(missing) > 5 else ''}; fix the paths (relative ones are resolved "
            f"against {base}) or remove those lines."
        )
    if all(len(r) == 1 for r in rows):
        return FileList(tuple(paths))
    if any(len(r) < 2 for r in rows):
        raise DatasetUnavailableError(
            f"file list {list_path}: some lines have a label and some do not; give every line "
            "a label or none."
        )
    raw = [r[1].strip() for r in rows]
    if all(v.lstrip("-").isdigit() for v in raw):
        return FileList(tuple(paths), tuple(int(v) for v in raw))
    classes = tuple(sorted(set(raw)))
    index = {c: i for i, c in enumerate(classes)}
    return FileList(tuple(paths), tuple(index[v] for v in raw), classes)
