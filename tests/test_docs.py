"""The documentation's code examples run, and the API reference covers every public name.

Every ```python block of ``docs/**/*.md`` and of the user-facing READMEs
(``packages/*/README.md``, ``apps/train/README.md``) is executed. The blocks of one page run in
order in one namespace (a later block may use what an earlier one defined), inside a temporary
working directory, with a time limit per page. A block is skipped when the line before its
opening fence is ``<!-- skip-test -->`` (see docs/contributing.md).
"""

from __future__ import annotations

import contextlib
import importlib
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP_MARKER = "<!-- skip-test -->"
PAGE_TIME_LIMIT_S = 90
# Pages whose Python blocks are signatures, not programs; each with the reason.
NOT_EXECUTED = {
    "docs/architecture.md": "contract signatures (Protocol stubs); the lead owns the page",
}
PACKAGES = ("ssl_losses", "ssl_data", "ssl_core", "ssl_forwards", "ssl_callbacks", "ssl_train")

_OPEN_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown page."""

    path: str
    line: int  # 1-based line of the first code line
    language: str
    code: str
    skipped: bool


def extract_blocks(text: str, path: str = "<page>") -> list[Block]:
    """Return every fenced code block of ``text`` in order (any language)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _OPEN_FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        language = match["info"].strip().split(" ")[0].split("{")[0].lower()
        previous = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            body.append(lines[j])
            j += 1
        else:
            raise ValueError(f"{path}:{i + 1}: code fence {fence!r} is never closed")
        code = textwrap.dedent(
            "\n".join(ln[len(indent) :] if ln.startswith(indent) else ln for ln in body)
        )
        blocks.append(Block(path, i + 2, language, code + "\n", previous == SKIP_MARKER))
        i = j + 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    """Return the Python blocks of the page at ``path`` (skipped ones included, flagged)."""
    rel = path.relative_to(ROOT).as_posix()
    return [b for b in extract_blocks(path.read_text(), rel) if b.language in {"python", "py"}]


def user_facing_pages() -> list[Path]:
    """Return the Markdown pages whose Python examples must run."""
    pages = sorted((ROOT / "docs").rglob("*.md"))
    pages += sorted((ROOT / "packages").glob("*/README.md"))
    pages.append(ROOT / "apps" / "train" / "README.md")
    return [p for p in pages if p.is_file() and p.relative_to(ROOT).as_posix() not in NOT_EXECUTED]


PAGES_WITH_CODE = [p for p in user_facing_pages() if any(not b.skipped for b in python_blocks(p))]


def run_page(blocks: list[Block], workdir: Path) -> dict[str, object]:
    """Execute ``blocks`` in order in one namespace, in ``workdir``; return the namespace."""
    import torch

    torch.manual_seed(0)
    namespace: dict[str, object] = {"__name__": "__docs_example__"}
    # Examples are tiny: one thread is several times faster than two spinning on shared cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with contextlib.chdir(workdir):
            for block in blocks:
                if block.skipped:
                    continue
                # Leading newlines make traceback line numbers equal the page's line numbers.
                source = "\n" * (block.line - 1) + block.code
                exec(compile(source, block.path, "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
    return namespace


@pytest.mark.timeout(PAGE_TIME_LIMIT_S)
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_python_examples_run(page: Path, tmp_path: Path) -> None:
    run_page(python_blocks(page), tmp_path)


# --- the collector itself -------------------------------------------------------------------


def test_extract_blocks_reads_languages_lines_indentation_and_skip_marker() -> None:
    page = "\n".join(
        [
            "# Title",  # 1
            "```python",  # 2
            "a = 1",  # 3
            "```",  # 4
            "<!-- skip-test -->",  # 5
            "",  # 6
            "```python",  # 7
            "raise RuntimeError('never run')",  # 8
            "```",  # 9
            '!!! note "inside an admonition"',  # 10
            "    ```python",  # 11
            "    if a:",  # 12
            "        b = a + 1",  # 13
            "    ```",  # 14
            "````markdown",  # 15
            "```python",  # 16
            "not_code_of_this_page()",  # 17
            "```",  # 18
            "````",  # 19
            "```bash",  # 20
            "echo hi",  # 21
            "```",  # 22
        ]
    )
    blocks = extract_blocks(page, "p.md")
    assert [(b.language, b.line, b.skipped) for b in blocks] == [
        ("python", 3, False),
        ("python", 8, True),
        ("python", 12, False),
        ("markdown", 16, False),
        ("bash", 21, False),
    ]
    assert blocks[2].code == "if a:\n    b = a + 1\n"
    assert "not_code_of_this_page" in blocks[3].code  # nested fence stays inside the outer block


def test_extract_blocks_rejects_an_unclosed_fence() -> None:
    with pytest.raises(ValueError, match=r"p.md:2: code fence '```' is never closed"):
        extract_blocks("text\n```python\nx = 1\n", "p.md")


def test_run_page_shares_one_namespace_skips_marked_blocks_and_reports_page_lines(
    tmp_path: Path,
) -> None:
    page = (
        "```python\nx = 2\n```\n"
        "<!-- skip-test -->\n```python\nx = 100\n```\n"
        "```python\ny = x * 3\n```\n"
    )
    namespace = run_page(extract_blocks(page, "ok.md"), tmp_path)
    assert namespace["y"] == 6

    broken = "intro\n\n```python\nok = 1\nboom = 1 / 0\n```\n"
    with pytest.raises(ZeroDivisionError) as info:
        run_page(extract_blocks(broken, "broken.md"), tmp_path)
    frame = info.traceback[-1]
    assert (str(frame.path), frame.lineno + 1) == ("broken.md", 5)


def test_every_package_readme_has_a_tested_python_example() -> None:
    readmes = sorted((ROOT / "packages").glob("*/README.md"))
    assert len(readmes) == 5
    missing = [r.parent.name for r in readmes if r not in PAGES_WITH_CODE]
    assert not missing, f"READMEs without a runnable ```python example: {missing}"


# --- the API reference ----------------------------------------------------------------------


def api_directives() -> list[str]:
    """The ``::: dotted.name`` identifiers rendered by the pages of docs/api/."""
    found = []
    for page in sorted((ROOT / "docs" / "api").glob("*.md")):
        found += re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), flags=re.MULTILINE)
    return found


@pytest.mark.parametrize("module_name", PACKAGES)
def test_api_reference_renders_every_package(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert getattr(module, "__all__", None), f"{module_name} defines no __all__"
    page = (ROOT / "docs" / "api" / f"{module_name}.md").read_text()
    assert f"::: {module_name}\n" in page, f"docs/api/{module_name}.md does not render it"


SOURCE_ROOTS = [str(p) for p in sorted((ROOT / "packages").glob("*/src"))] + [
    str(ROOT / "apps" / "train" / "src")
]


@pytest.fixture(scope="module")
def griffe_loader():
    """Griffe (what mkdocstrings renders from) over every package's sources, aliases resolved."""
    import griffe

    loader = griffe.GriffeLoader(search_paths=SOURCE_ROOTS)
    for name in {d.split(".")[0] for d in api_directives()}:
        loader.load(name)
    loader.resolve_aliases(implicit=False, external=None)
    return loader


@pytest.mark.parametrize("identifier", api_directives())
def test_every_public_name_in_the_api_reference_has_a_docstring(
    identifier: str, griffe_loader
) -> None:
    obj = griffe_loader.modules_collection[identifier]
    assert obj.docstring, f"{identifier} has no docstring"
    if not obj.is_module:
        return
    assert obj.exports, f"{identifier} defines no __all__: the reference renders its members"
    missing = []
    for name in obj.exports:
        member = obj.members.get(name)
        if name == "__version__":
            continue
        if member is None or not member.docstring:
            missing.append(name)
    assert not missing, (
        f"{identifier}: public names without a docstring (for a constant, put a string literal "
        f"on the line after it): {missing}"
    )


# --- configs shown in the docs --------------------------------------------------------------


def _targets(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["_target_"]] if "_target_" in node else []
        found += [
            path for key, value in node.items() if key != "_target_" for path in _targets(value)
        ]
        found += [node["forward"]] if isinstance(node.get("forward"), str) else []
        return found
    if isinstance(node, list):
        return [path for item in node for path in _targets(item)]
    return []


def yaml_targets() -> list[tuple[str, int, str]]:
    """Every ``_target_`` and ``forward`` dotted path of the YAML blocks of docs/**/*.md."""
    import yaml

    found = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        rel = page.relative_to(ROOT).as_posix()
        for block in extract_blocks(page.read_text(), rel):
            if block.language == "yaml" and "--8<--" not in block.code:
                found += [(rel, block.line, path) for path in _targets(yaml.safe_load(block.code))]
    return found


def test_yaml_examples_name_importable_objects() -> None:
    from hydra.utils import get_object

    from ssl_train.names import translate  # the app maps stable-ssl names as its loader does

    targets = yaml_targets()
    assert len(targets) >= 5  # the public-docs config shape on docs/configs.md at least
    broken = []
    for page, line, path in targets:
        try:
            get_object(translate(path))
        except Exception as err:
            broken.append(f"{page}:{line}: {path}: {err}")
    assert not broken, "\n".join(broken)


# --- the benchmark-results hook of the site -------------------------------------------------


def _results_hook():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "docs_benchmark_results_hook", ROOT / "docs" / "_hooks" / "benchmark_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_hook_renders_tables_and_says_when_nothing_was_measured(tmp_path: Path) -> None:
    hook = _results_hook()
    assert hook.render_directory(tmp_path) == hook.NOT_MEASURED + "\n"

    (tmp_path / "losses.json").write_text(
        '{"benchmark": "losses", "speedup": 1.23456, "rows": ['
        '{"loss": "ntxent", "B": 256, "ours_ms": 1.5}, '
        '{"loss": "vicreg", "B": 256, "peer": "x|y"}]}'
    )
    text = hook.render_directory(tmp_path)
    assert text.splitlines() == [
        "### `losses.json`",
        "",
        "| field | value |",
        "|---|---|",
        "| benchmark | losses |",
        "| speedup | 1.235 |",
        "",
        "**rows**",
        "",
        "| loss | B | ours_ms | peer |",
        "|---|---|---|---|",
        "| ntxent | 256 | 1.5 |  |",
        "| vicreg | 256 |  | x\\|y |",
    ]


def test_benchmarks_page_carries_the_results_marker() -> None:
    hook = _results_hook()
    assert hook.MARKER in (ROOT / "docs" / "benchmarks.md").read_text()
    config = (ROOT / "mkdocs.yml").read_text()
    assert "docs/_hooks/benchmark_results.py" in config
