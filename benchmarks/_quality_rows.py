"""Rows of the Fashion-MNIST quality table: selectors, the method catalog and merging results.

A row is selected as ``METHOD`` or ``METHOD@BACKBONE`` (``vicreg``, ``dino@vit_tiny``):
``METHOD`` is an app method config (``conf/method/<METHOD>.yaml``), ``BACKBONE`` an app backbone
config. Without ``@`` the row trains the benchmark's default backbone, or the backbone the method
config selects itself (``mae``, ``ijepa`` and ``ibot`` select ``vit_tiny``). With a ViT backbone a
method whose app config has a ViT recipe ``<METHOD>_vit`` trains that recipe. Rows on the default
backbone, or on the backbone their own config selects, are named by the method (``dino``,
``mae``), others ``METHOD (BACKBONE)`` (``dino (vit_tiny)``).

Pure Python (no torch) so that the selector parsing and the merge are tested in milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

VIT_RECIPE_SUFFIX = "_vit"
ROW_SETTINGS = ("budget_minutes", "data", "smoke", "overrides")
"""Per-row settings that must agree for rows to share one equal-budget table."""
PREVIOUS_KEYS = ("knn20", "linear", "commit", "date")


@dataclass(frozen=True)
class Catalog:
    """What the app offers: method configs (with the backbone each selects) and backbones.

    Attributes:
        methods: Method config name -> the backbone config it selects itself, or ``None``.
        backbones: Backbone config name -> whether it builds a ViT (``from_timm``).
    """

    methods: Mapping[str, str | None]
    backbones: Mapping[str, bool]

    @classmethod
    def from_conf(cls, conf_dir: Path) -> Catalog:
        """Read the app's ``conf/method`` and ``conf/backbone`` folders.

        Example:
            >>> from importlib.resources import files
            >>> catalog = Catalog.from_conf(Path(str(files("ssl_train.conf"))))  # doctest: +SKIP
        """
        methods = {
            p.stem: _own_backbone(conf_dir / "method", p.stem)
            for p in sorted((conf_dir / "method").glob("*.yaml"))
            if not p.stem.startswith("_")
        }
        backbones = {
            p.stem: _backbone_target(conf_dir / "backbone", p.stem).endswith("from_timm")
            for p in sorted((conf_dir / "backbone").glob("*.yaml"))
        }
        return cls(methods, backbones)

    def selectable(self) -> list[str]:
        """Method names a selector may use (the ``<m>_vit`` recipes are chosen by backbone)."""
        return [m for m in self.methods if not self._is_vit_recipe(m)]

    def _is_vit_recipe(self, name: str) -> bool:
        base = name.removesuffix(VIT_RECIPE_SUFFIX)
        return name.endswith(VIT_RECIPE_SUFFIX) and base in self.methods

    def default_selectors(self) -> list[str]:
        """Every method at its default backbone, plus ``<m>@<its ViT>`` for each ViT recipe."""
        out = list(self.selectable())
        for name, own in self.methods.items():
            if self._is_vit_recipe(name) and own is not None:
                out.append(f"{name.removesuffix(VIT_RECIPE_SUFFIX)}@{own}")
        return out


def _config_node(folder: Path, name: str, depth: int) -> dict[str, Any] | None:
    """The YAML of ``folder/name.yaml`` (``None`` when missing), guarding against deep defaults."""
    if depth > 8:
        raise ValueError(f"{folder.name} config {name}: defaults nest deeper than 8 levels.")
    path = folder / f"{name}.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else None


def _backbone_target(folder: Path, name: str, depth: int = 0) -> str:
    """A backbone config's ``_target_``, inherited from the configs in its defaults list."""
    node = _config_node(folder, name, depth) or {}
    target = str(node.get("_target_", ""))
    for entry in node.get("defaults", []):
        if not target and isinstance(entry, str) and entry != "_self_":
            target = _backbone_target(folder, entry, depth + 1)
    return target


def _own_backbone(folder: Path, name: str, depth: int = 0) -> str | None:
    """The backbone a method config selects in its defaults list (followed through parents)."""
    node = _config_node(folder, name, depth)
    if node is None:
        return None
    found = None
    for entry in node.get("defaults", []):
        if isinstance(entry, str) and entry != "_self_":
            found = _own_backbone(folder, entry, depth + 1) or found
        elif isinstance(entry, dict):
            for key, value in entry.items():
                if key.removeprefix("override").strip().lstrip("/") == "backbone":
                    found = str(value)
    return found


@dataclass(frozen=True)
class Selector:
    """One row to measure.

    Attributes:
        method: The method's name (``dino``).
        backbone: The backbone config the row trains (``vit_tiny``).
        config: The app method config it trains (``dino_vit`` for ``dino@vit_tiny``).
        vit: Whether the backbone is a ViT.
        name: The row's name in the table (``dino (vit_tiny)``).
        key: The run directory's name under ``--out`` (``dino@vit_tiny``).
    """

    method: str
    backbone: str
    config: str
    vit: bool
    name: str
    key: str


def parse_selector(text: str, catalog: Catalog, default_backbone: str) -> Selector:
    """Parse ``METHOD`` or ``METHOD@BACKBONE`` against the app's configs.

    Example:
        >>> methods = {"dino": None, "dino_vit": "vit_tiny"}
        >>> catalog = Catalog(methods, {"r": False, "vit_tiny": True})
        >>> parse_selector("dino@vit_tiny", catalog, "r").config
        'dino_vit'

    Raises:
        ValueError: Naming the unknown method or backbone and the choices, or a ViT-only
            method given a CNN backbone.
    """
    method, sep, backbone = text.strip().partition("@")
    if not method or (sep and not backbone) or "@" in backbone:
        raise ValueError(f"row {text!r}: write METHOD or METHOD@BACKBONE (e.g. dino@vit_tiny).")
    if method not in catalog.methods:
        raise ValueError(
            f"row {text!r}: unknown method {method!r}; the app has "
            f"{', '.join(catalog.selectable())}."
        )
    if catalog._is_vit_recipe(method):
        base = method.removesuffix(VIT_RECIPE_SUFFIX)
        own = catalog.methods[method]
        raise ValueError(
            f"row {text!r}: {method} is the ViT recipe of {base}; select {base}@{own} "
            "(a ViT backbone picks the recipe)."
        )
    own = catalog.methods[method]
    backbone = backbone or own or default_backbone
    if backbone not in catalog.backbones:
        raise ValueError(
            f"row {text!r}: unknown backbone {backbone!r}; the app has "
            f"{', '.join(catalog.backbones)}."
        )
    vit = catalog.backbones[backbone]
    if own is not None and catalog.backbones.get(own, False) and not vit:
        raise ValueError(
            f"row {text!r}: {method} trains ViTs only (its config selects {own}); "
            f"select {method} or {method}@<a ViT backbone>."
        )
    recipe = method + VIT_RECIPE_SUFFIX
    config = recipe if vit and recipe in catalog.methods else method
    # A method on its own config's backbone is named by the method, as the issues name the rows.
    default = backbone in (default_backbone, own)
    return Selector(
        method=method,
        backbone=backbone,
        config=config,
        vit=vit,
        name=method if default else f"{method} ({backbone})",
        key=method if default else f"{method}@{backbone}",
    )


def parse_selectors(
    values: Iterable[str], catalog: Catalog, default_backbone: str
) -> list[Selector]:
    """Parse space- or comma-separated selectors (``all``: the catalog's defaults), no repeats."""
    texts = [t for v in values for t in v.replace(",", " ").split()]
    if "all" in texts:
        texts = [t for t in texts if t != "all"] + catalog.default_selectors()
    out: dict[str, Selector] = {}
    for text in texts:
        sel = parse_selector(text, catalog, default_backbone)
        out.setdefault(sel.key, sel)
    return list(out.values())


def baseline_name(kind: str, backbone: str | None = None) -> str:
    """``raw pixels`` or ``random-init <backbone>``."""
    return "raw pixels" if kind == "pixels" else f"random-init {backbone}"


def upgrade(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of a results file, each with its own settings (older files kept them in ``meta``)."""
    meta = data.get("meta", {})
    rows = []
    for old in data.get("rows", []):
        row = dict(old)
        if "kind" not in row:
            name = row["method"]
            row["kind"] = (
                "pixels"
                if name == "raw pixels"
                else "random"
                if name.startswith("random-init")
                else "method"
            )
        row.setdefault("backbone", None if row["kind"] == "pixels" else meta.get("backbone"))
        row.setdefault("vit", False)
        for key in ("commit", "date", *ROW_SETTINGS):
            if key in meta:
                row.setdefault(key, meta[key])
        rows.append(row)
    return rows


def mismatches(rows: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> list[str]:
    """How ``settings`` differ from those of the trained rows already in the table."""
    out = []
    for row in rows:
        if row.get("kind") != "method":
            continue
        diff = [k for k in ROW_SETTINGS if k in row and row[k] != settings.get(k)]
        if diff:
            out.append(row["method"] + ": " + ", ".join(f"{k}={row[k]!r}" for k in diff))
    return out


def attach_references(
    rows: Sequence[dict[str, Any]], reference: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``rows`` with the same-named trained rows of ``reference`` (a results file of older code
    measured on the same machine) kept in each row's ``reference``, for issue #15's
    no-regression check without a change of machine in between.

    Raises:
        ValueError: A reference row has other settings (budget, overrides) than its row.
    """
    by_name = {r["method"]: r for r in upgrade(reference) if r.get("kind") == "method"}
    out = []
    for row in rows:
        ref = by_name.get(row["method"]) if row.get("kind") == "method" else None
        if ref is not None:
            diff = [k for k in ("budget_minutes", "overrides") if ref.get(k) != row.get(k)]
            if diff:
                raise ValueError(
                    f"reference row {row['method']!r} differs in {', '.join(diff)}; measure the "
                    "old code with the same --minutes and --set as the table's row."
                )
            row = {**row, "reference": {k: ref.get(k) for k in (*PREVIOUS_KEYS, "steps")}}
        out.append(row)
    return out


def merge(
    existing: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]], default_backbone: str
) -> list[dict[str, Any]]:
    """Rows of ``existing`` with those of ``new`` replacing the same-named ones, in table order.

    A replaced row measured at another commit is kept in the new row's ``previous`` (its
    figures, commit and date), for the no-regression check of issue #15.

    Order: raw pixels, the random-init rows, then the trained rows grouped by backbone (the
    default backbone first), each group in first-seen order with ``supervised`` last.
    """
    by_name: dict[str, dict[str, Any]] = {r["method"]: r for r in existing}
    for r in new:
        before = by_name.get(r["method"])
        if before is not None and before.get("commit") != r.get("commit"):
            r = {**r, "previous": {k: before.get(k) for k in PREVIOUS_KEYS}}
        elif before is not None and "previous" in before:  # the same measurement again
            r = {**r, "previous": before["previous"]}
        by_name[r["method"]] = r
    rows = list(by_name.values())
    backbones = [default_backbone] + [r.get("backbone") for r in rows]
    rank = {b: i for i, b in reversed(list(enumerate(backbones)))}

    def order(item: tuple[int, dict[str, Any]]) -> tuple[int, int, int, int]:
        i, r = item
        kind = {"pixels": 0, "random": 1}.get(r.get("kind", "method"), 2)
        return (
            kind,
            rank.get(r.get("backbone"), len(rank)),
            int(r.get("config", r["method"]) == "supervised"),
            i,
        )

    return [r for _, r in sorted(enumerate(rows), key=order)]
