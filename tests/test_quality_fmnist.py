"""benchmarks/quality_fmnist.py: row selectors, merging into the results, goals, a smoke run."""

import importlib.util
import json
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
DEFAULT = "small_resnet_wide_2x2"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


rows_mod = _load("_quality_rows")
report = _load("_quality_report")


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def catalog(tmp_path):
    """A conf folder shaped like the app's after the vit/masked merges."""
    method, backbone = tmp_path / "method", tmp_path / "backbone"
    _write(method / "_common.yaml", "module: {}\n")
    _write(method / "vicreg.yaml", "defaults:\n  - _common\n  - _self_\n")
    _write(method / "supervised.yaml", "defaults:\n  - _common\n  - _self_\n")
    _write(method / "dino.yaml", "defaults:\n  - _common\n  - _self_\n")
    vit = "defaults:\n  - {base}\n  - override /backbone: vit_tiny\n  - _self_\n"
    _write(method / "dino_vit.yaml", vit.format(base="dino"))
    _write(method / "mae.yaml", vit.format(base="_common"))
    _write(method / "ibot.yaml", "defaults:\n  - dino_vit\n  - _self_\n")
    _write(backbone / f"{DEFAULT}.yaml", "defaults:\n  - small_resnet_wide\n  - _self_\n")
    _write(backbone / "small_resnet_wide.yaml", "_target_: ssl_core.backbone.SmallResNet\n")
    _write(backbone / "vit_tiny.yaml", "_target_: ssl_core.backbone.from_timm\n")
    # a ViT known only through its parent, as the app's vit_small and vit_pico are
    _write(backbone / "vit_small.yaml", "defaults:\n  - vit_tiny\n  - _self_\ndepth: 4\n")
    return rows_mod.Catalog.from_conf(tmp_path)


def test_catalog_reads_each_methods_own_backbone_through_its_parents(catalog):
    assert catalog.methods == {
        "dino": None,
        "dino_vit": "vit_tiny",
        "ibot": "vit_tiny",  # inherited from dino_vit
        "mae": "vit_tiny",
        "supervised": None,
        "vicreg": None,
    }
    assert catalog.backbones == {
        DEFAULT: False,
        "small_resnet_wide": False,
        "vit_small": True,
        "vit_tiny": True,
    }
    assert catalog.default_selectors() == [
        "dino",
        "ibot",
        "mae",
        "supervised",
        "vicreg",
        "dino@vit_tiny",
    ]


@pytest.mark.parametrize(
    ("text", "backbone", "config", "name", "key", "vit"),
    [
        ("vicreg", DEFAULT, "vicreg", "vicreg", "vicreg", False),
        ("dino", DEFAULT, "dino", "dino", "dino", False),
        ("dino@vit_tiny", "vit_tiny", "dino_vit", "dino (vit_tiny)", "dino@vit_tiny", True),
        ("dino@vit_small", "vit_small", "dino_vit", "dino (vit_small)", "dino@vit_small", True),
        ("vicreg@vit_tiny", "vit_tiny", "vicreg", "vicreg (vit_tiny)", "vicreg@vit_tiny", True),
        ("vicreg@small_resnet_wide", "small_resnet_wide", "vicreg", "vicreg (small_resnet_wide)",
         "vicreg@small_resnet_wide", False),
        ("mae", "vit_tiny", "mae", "mae", "mae", True),
        ("ibot", "vit_tiny", "ibot", "ibot", "ibot", True),
        (f"vicreg@{DEFAULT}", DEFAULT, "vicreg", "vicreg", "vicreg", False),
    ],
)  # fmt: skip
def test_selector(catalog, text, backbone, config, name, key, vit):
    sel = rows_mod.parse_selector(text, catalog, DEFAULT)
    assert (sel.backbone, sel.config, sel.name, sel.key, sel.vit) == (
        backbone,
        config,
        name,
        key,
        vit,
    )
    assert sel.method == text.partition("@")[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("simclr", "unknown method 'simclr'; the app has dino, ibot, mae, supervised, vicreg"),
        ("dino@resnet99", "unknown backbone 'resnet99'"),
        ("dino@", "write METHOD or METHOD@BACKBONE"),
        ("@vit_tiny", "write METHOD or METHOD@BACKBONE"),
        ("dino@vit_tiny@x", "write METHOD or METHOD@BACKBONE"),
        ("dino_vit", "dino_vit is the ViT recipe of dino; select dino@vit_tiny"),
        (f"mae@{DEFAULT}", "mae trains ViTs only (its config selects vit_tiny)"),
    ],
)
def test_selector_errors_name_the_fix(catalog, text, message):
    with pytest.raises(ValueError, match=r"^row ") as err:
        rows_mod.parse_selector(text, catalog, DEFAULT)
    assert message in str(err.value)


def test_selectors_split_on_spaces_and_commas_without_repeats(catalog):
    sels = rows_mod.parse_selectors(
        ["vicreg,dino@vit_tiny", "mae vicreg", "mae@vit_tiny"], catalog, DEFAULT
    )
    assert [s.key for s in sels] == ["vicreg", "dino@vit_tiny", "mae"]
    every = rows_mod.parse_selectors(["all"], catalog, DEFAULT)
    assert [s.name for s in every][-1] == "dino (vit_tiny)" and len(every) == 6


def test_the_apps_methods_select_the_default_backbone_and_their_vit_recipes():
    catalog = rows_mod.Catalog.from_conf(Path(str(files("ssl_train.conf"))))
    seed = ["simclr", "nnclr", "byol", "vicreg", "barlow_twins", "supervised"]
    for sel in rows_mod.parse_selectors(seed, catalog, DEFAULT):
        assert (sel.name, sel.config, sel.backbone) == (sel.method, sel.method, DEFAULT)
    vit = rows_mod.parse_selector("dino@vit_tiny", catalog, DEFAULT)
    assert (vit.config, vit.vit, vit.name) == ("dino_vit", True, "dino (vit_tiny)")
    pico = rows_mod.parse_selector("mae@vit_pico", catalog, DEFAULT)
    assert (pico.config, pico.vit, pico.name) == ("mae", True, "mae (vit_pico)")


def _old_file():
    """A results file as the benchmark wrote it before rows kept their own settings."""
    meta = {"commit": "7f00225", "date": "2026-11-24 10:15", "budget_minutes": 10.0,
            "data": "fashion_mnist", "smoke": False, "overrides": ["trainer.precision=bf16-mixed"],
            "backbone": DEFAULT}  # fmt: skip
    rows = [
        {"method": "raw pixels", "knn20": 0.85, "linear": 0.84},
        {"method": f"random-init {DEFAULT}", "knn20": 0.82, "linear": 0.83},
        {"method": "vicreg", "knn20": 0.87, "linear": 0.90, "steps": 10, "epochs": 1.0},
        {"method": "supervised", "knn20": 0.93, "linear": 0.93, "steps": 10, "epochs": 1.0},
    ]
    return {"meta": meta, "rows": rows}


def _new(name, backbone, vit, knn20, linear, commit="abcdef0", kind="method"):
    return {"method": name, "kind": kind, "backbone": backbone, "vit": vit, "knn20": knn20,
            "linear": linear, "commit": commit, "date": "2026-12-01 11:00"}  # fmt: skip


def test_upgrade_gives_every_old_row_the_files_settings():
    rows = rows_mod.upgrade(_old_file())
    assert [r["kind"] for r in rows] == ["pixels", "random", "method", "method"]
    assert [r["backbone"] for r in rows] == [None, DEFAULT, DEFAULT, DEFAULT]
    for r in rows:
        assert (r["commit"], r["date"], r["budget_minutes"]) == (
            "7f00225",
            "2026-11-24 10:15",
            10.0,
        )
        assert r["overrides"] == ["trainer.precision=bf16-mixed"] and r["vit"] is False


def test_merge_replaces_same_named_rows_keeps_the_others_in_table_order():
    old = rows_mod.upgrade(_old_file())
    new = [
        _new("dino (vit_tiny)", "vit_tiny", True, 0.80, 0.86),
        _new("vicreg", DEFAULT, False, 0.88, 0.91),
        _new("dino", DEFAULT, False, 0.86, 0.89),
    ]
    merged = rows_mod.merge(old, new, DEFAULT)
    merged = rows_mod.merge(
        merged, [_new("random-init vit_tiny", "vit_tiny", True, 0.7, 0.78, kind="random")], DEFAULT
    )
    names = [r["method"] for r in merged]
    assert names == [
        "raw pixels",
        f"random-init {DEFAULT}",
        "random-init vit_tiny",
        "vicreg",
        "dino",
        "supervised",
        "dino (vit_tiny)",
    ]
    by_name = {r["method"]: r for r in merged}
    assert by_name["vicreg"]["linear"] == 0.91 and by_name["vicreg"]["commit"] == "abcdef0"
    assert by_name["supervised"]["commit"] == "7f00225"  # kept, with its own commit
    assert by_name["raw pixels"]["commit"] == "7f00225"


def test_mismatches_name_the_rows_measured_otherwise():
    rows = rows_mod.upgrade(_old_file())
    same = {"budget_minutes": 10.0, "data": "fashion_mnist", "smoke": False,
            "overrides": ["trainer.precision=bf16-mixed"]}  # fmt: skip
    assert rows_mod.mismatches(rows, same) == []
    differ = rows_mod.mismatches(rows, {**same, "overrides": []})
    assert differ == [
        f"{m}: overrides=['trainer.precision=bf16-mixed']" for m in ("vicreg", "supervised")
    ]


def test_goals_compare_cnn_rows_with_pixels_and_vit_rows_with_their_random_init():
    rows = rows_mod.merge(
        rows_mod.upgrade(_old_file()),
        [
            _new("dino", DEFAULT, False, 0.84, 0.89),  # kNN below pixels
            _new("random-init vit_tiny", "vit_tiny", True, 0.70, 0.80, kind="random"),
            _new("dino (vit_tiny)", "vit_tiny", True, 0.80, 0.86),
            _new("mae", "vit_tiny", True, 0.75, 0.84),
            _new("mae (vit_small)", "vit_small", True, 0.75, 0.84),
        ],
        DEFAULT,
    )
    got = {(g.row, g.goal): (g.value, g.ok) for g in report.goals(rows, DEFAULT, ("swav", "dino"))}
    pixels = "kNN-20 and linear > raw pixels"
    assert got[("vicreg", pixels)] == ("+2.00 / +6.00 pts", True)
    assert got[("dino", pixels)] == ("-1.00 / +5.00 pts", False)
    assert got[("dino (vit_tiny)", "linear >= random-init vit_tiny + 5")] == ("+6.00 pts", True)
    assert got[("mae", "linear >= random-init vit_tiny + 5")] == ("+4.00 pts", False)
    assert got[("mae (vit_small)", "linear >= random-init vit_small + 5")] == (
        "no random-init row",
        None,
    )
    assert got[("vicreg", "best SSL linear within 3 pts of supervised")] == (
        "3.00 pts behind",
        True,
    )
    assert got[("swav", "a row of issue #17/#18")] == ("not measured yet", None)
    assert ("supervised", pixels) not in got and len(got) == 7


def test_markdown_gives_each_rows_commit_and_the_goals():
    rows = rows_mod.merge(
        rows_mod.upgrade(_old_file()), [_new("dino", DEFAULT, False, 0.86, 0.89)], DEFAULT
    )
    for r in rows:
        r.setdefault("budget_minutes", 10.0)
        r.setdefault("overrides", ["trainer.precision=bf16-mixed"])
    meta = {
        "machine": "x86_64",
        "threads": 2,
        "device": "cpu",
        "data": "fashion_mnist",
        "smoke": False,
        "backbone": DEFAULT,
        "out": "outputs/q",
        "probe": {"lr": 3e-3, "epochs": 30, "min_steps": 1000, "batch_size": 256},
    }
    page = report.markdown(rows, meta)
    assert "| dino | 86.00 | 89.00 | - | - | - | - | `abcdef0` 2026-12-01 11:00 |" in page
    assert "| vicreg | 87.00 | 90.00 | - | - | - | 10 (1.00) | `7f00225` 2026-11-24 10:15 |" in page
    assert "| dino | kNN-20 and linear > raw pixels | +1.00 / +5.00 pts | met |" in page
    assert "| mae (vit_pico) | a row of issue #17/#18 | not measured yet | not measured |" in page
    assert "10 min per trained row" in page and "--set trainer.precision=bf16-mixed" in page


@pytest.mark.slow
def test_smoke_row_merges_into_an_existing_table(tmp_path):
    """One method at a few seconds on 256 embedded images; the baselines come from the file."""
    old = _old_file()
    old["meta"].update(budget_minutes=0.02, data="fashion_mnist_embedded", smoke=True, overrides=[])
    results = tmp_path / "q"
    results.with_suffix(".json").write_text(json.dumps(old))
    done = subprocess.run(
        [sys.executable, str(BENCH / "quality_fmnist.py"), "--smoke", "--minutes", "0.02",
         "--methods", "simclr", "--out", str(tmp_path / "runs"), "--results", str(results),
         "--calibration-steps", "1", "--calibration-warmup", "1", "--smoke-limit", "256"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads(results.with_suffix(".json").read_text())
    by_name = {r["method"]: r for r in data["rows"]}
    assert list(by_name) == [
        "raw pixels",
        f"random-init {DEFAULT}",
        "vicreg",
        "simclr",
        "supervised",
    ]
    simclr = by_name["simclr"]
    assert simclr["commit"] != "7f00225" and simclr["smoke"] is True and simclr["steps"] >= 1
    assert 0.0 <= simclr["knn20"] <= 1.0 and 0.0 <= simclr["linear"] <= 1.0
    assert (tmp_path / "runs" / "simclr" / "quality.json").is_file()
    assert by_name["vicreg"]["commit"] == "7f00225"
    assert "| simclr |" in results.with_suffix(".md").read_text()


def test_a_row_measured_again_keeps_its_previous_figures_for_the_regression_goal():
    old = rows_mod.upgrade(_old_file())
    merged = rows_mod.merge(old, [_new("vicreg", DEFAULT, False, 0.866, 0.905)], DEFAULT)
    vicreg = next(r for r in merged if r["method"] == "vicreg")
    assert vicreg["previous"] == {"knn20": 0.87, "linear": 0.90, "commit": "7f00225",
                                  "date": "2026-11-24 10:15"}  # fmt: skip
    cached = {k: v for k, v in vicreg.items() if k != "previous"}  # as its quality.json holds it
    again = rows_mod.merge(merged, [cached], DEFAULT)
    assert next(r for r in again if r["method"] == "vicreg")["previous"]["commit"] == "7f00225"
    got = {(g.row, g.goal): (g.value, g.ok) for g in report.goals(merged, DEFAULT)}
    goal = "kNN-20 and linear within 0.5 pts of `7f00225` or better"
    assert got[("vicreg", goal)] == ("-0.40 / +0.50 pts", True)
    worse = rows_mod.merge(old, [_new("vicreg", DEFAULT, False, 0.864, 0.91)], DEFAULT)
    got = {(g.row, g.goal): (g.value, g.ok) for g in report.goals(worse, DEFAULT)}
    assert got[("vicreg", goal)] == ("-0.60 / +1.00 pts", False)


def test_a_same_machine_reference_replaces_the_previous_figures_in_the_regression_goal():
    old = rows_mod.upgrade(_old_file())
    settings = {"budget_minutes": 10.0, "overrides": ["trainer.precision=bf16-mixed"]}
    new = {**_new("vicreg", DEFAULT, False, 0.860, 0.89), **settings}
    merged = rows_mod.merge(old, [new], DEFAULT)  # previous: 0.87 / 0.90, on another machine
    reference = _old_file()
    reference["meta"]["date"] = "2026-12-01 09:00"
    reference["rows"][2] = {"method": "vicreg", "knn20": 0.862, "linear": 0.888, "steps": 6}
    del reference["rows"][3]  # supervised was not re-measured
    rows = rows_mod.attach_references(merged, reference)
    vicreg = next(r for r in rows if r["method"] == "vicreg")
    assert vicreg["reference"] == {"knn20": 0.862, "linear": 0.888, "commit": "7f00225",
                                   "date": "2026-12-01 09:00", "steps": 6}  # fmt: skip
    assert "reference" not in next(r for r in rows if r["method"] == "supervised")
    got = {(g.row, g.goal): (g.value, g.ok) for g in report.goals(rows, DEFAULT)}
    same = "kNN-20 and linear within 0.5 pts of `7f00225` on the same machine or better"
    assert got[("vicreg", same)] == ("-0.20 / +0.20 pts", True)
    assert not any("within 0.5" in goal and "same machine" not in goal for _, goal in got)
    # without the reference the same row fails against its previous, cross-machine figures
    got = {(g.row, g.goal): g.ok for g in report.goals(merged, DEFAULT)}
    assert got[("vicreg", "kNN-20 and linear within 0.5 pts of `7f00225` or better")] is False
    # a re-measured row drops the reference: it belonged to the figures it was measured beside
    again = rows_mod.merge(rows, [{**new, "commit": "1234567"}], DEFAULT)
    assert "reference" not in next(r for r in again if r["method"] == "vicreg")
    reference["meta"]["overrides"] = []
    with pytest.raises(ValueError, match="differs in overrides"):
        rows_mod.attach_references(merged, reference)
