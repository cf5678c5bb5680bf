"""MkDocs hook: render ``benchmarks/results/*.json`` (and ``*.md``) into the benchmarks page.

The page ``benchmarks.md`` holds the marker ``<!-- benchmark-results -->``; at build time it is
replaced by one section per results file, so the site always shows the committed results and
never a hand-copied table. Registered in ``mkdocs.yml`` under ``hooks:``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MARKER = "<!-- benchmark-results -->"
NOT_MEASURED = "Not yet measured: no results are committed under `benchmarks/results/` yet."


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, list | dict):
        text = json.dumps(value)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _is_table(value: Any) -> bool:
    return (
        isinstance(value, list) and len(value) > 0 and all(isinstance(row, dict) for row in value)
    )


def _table(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return lines


def render_results(data: Any) -> str:
    """Render one results JSON document as Markdown.

    Lists of objects become tables; the scalars of an object become a two-column table; nested
    objects and lists of objects become sub-sections; anything else is shown as JSON.

    Args:
        data: The parsed JSON.

    Returns:
        Markdown text.
    """
    if _is_table(data):
        return "\n".join(_table(data)) + "\n"
    if not isinstance(data, dict):
        return "```json\n" + json.dumps(data, indent=2) + "\n```\n"
    scalars = {k: v for k, v in data.items() if not (_is_table(v) or isinstance(v, dict))}
    parts: list[str] = []
    if scalars:
        rows = [{"field": key, "value": value} for key, value in scalars.items()]
        parts.append("\n".join(_table(rows)))
    for key, value in data.items():
        if key in scalars:
            continue
        parts.append(f"**{key}**\n\n" + render_results(value).rstrip("\n"))
    return "\n\n".join(parts) + "\n"


def render_directory(results_dir: Path) -> str:
    """Render every ``*.json`` and ``*.md`` file of ``results_dir``, one section each."""
    files = sorted(results_dir.glob("*.json")) + sorted(results_dir.glob("*.md"))
    if not files:
        return NOT_MEASURED + "\n"
    sections = []
    for path in files:
        title = f"### `{path.name}`\n\n"
        if path.suffix == ".md":
            sections.append(title + path.read_text().strip() + "\n")
            continue
        try:
            body = render_results(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            body = f"(unreadable JSON: {err})\n"
        sections.append(title + body)
    return "\n".join(sections)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker of the benchmarks page by the rendered results."""
    if MARKER not in markdown:
        return markdown
    root = Path(config["config_file_path"]).parent
    return markdown.replace(MARKER, render_directory(root / "benchmarks" / "results"))
