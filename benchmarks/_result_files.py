"""Where and when a benchmark result was written: the commit and each result file's date."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """The checked-out commit (short hash), or ``unknown``."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def file_date(path: Path) -> str:
    """When a result file was written: its last commit, or its mtime if it changed since.

    A fresh clone gives every file today's mtime, so committed files take their commit date.
    """
    mtime = time.strftime("%Y-%m-%d", time.localtime(path.stat().st_mtime))
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        committed = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return mtime
    return mtime if dirty or not committed else committed


def result_mode(results: Path, name: str, ran_quick: bool | None) -> str:
    """``full`` or ``quick`` and the date of ``results/<name>.json`` (``-`` when missing)."""
    path = results / f"{name}.json"
    if not path.exists():
        return "-"
    data = json.loads(path.read_text())
    flag = data.get("quick", data.get("tiny", data.get("meta", {}).get("smoke")))
    if flag is None and results.name == "quick":
        flag = True
    if ran_quick is not None:  # run by this invocation (not every script records the flag)
        flag = ran_quick
    when = data.get("date") or file_date(path)
    return f"{'quick' if flag else 'full'}, {when}"


def shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
