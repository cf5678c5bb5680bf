"""sslkit is the umbrella import; stable-ssl / stable-pretraining names map onto ours in configs."""

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from ssl_train.names import translate, translate_config

ROOT = Path(__file__).resolve().parents[3]
FOREIGN = ("stable_ssl", "stable_pretraining")


def test_import_sslkit_is_lazy() -> None:
    code = (
        "import sys, sslkit; "
        "names = ('torch', 'lightning', 'ssl_core', 'ssl_forwards'); "
        "print([m for m in names if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_docs_example_works_as_written() -> None:
    import ssl_callbacks
    import ssl_core
    import ssl_data
    import ssl_forwards
    import ssl_losses
    import sslkit as ssl
    from ssl_train.data import DataModule

    assert ssl.Module is ssl_core.Module
    assert ssl.TeacherStudentWrapper is ssl_core.TeacherStudentWrapper
    assert ssl.data.fold_views is ssl_data.fold_views
    assert ssl.losses.NTXEntLoss is ssl_losses.NTXEntLoss
    assert ssl.forward.simclr_forward is ssl_forwards.simclr_forward
    assert ssl.callbacks.OnlineProbe is ssl_callbacks.OnlineProbe
    assert ssl.backbone.SmallResNet is ssl_core.backbone.SmallResNet
    assert ssl.DataModule is DataModule
    with pytest.raises(AttributeError, match=r"no attribute 'Modul'.*Module"):
        _ = ssl.Modul


def test_no_module_is_installed_under_another_projects_name() -> None:
    for name in FOREIGN:
        spec = importlib.util.find_spec(name)
        # the real project may be installed beside ours; it must then not be a file of this repo
        assert spec is None or not Path(str(spec.origin)).resolve().is_relative_to(ROOT), name


@pytest.mark.parametrize(
    "dotted,expected",
    [
        ("stable_pretraining.forward.simclr_forward", "ssl_forwards.simclr_forward"),
        ("stable_pretraining.forward.simclr", "ssl_forwards.simclr_forward"),
        ("stable_ssl.forward.nnclr_forward", "ssl_forwards.nnclr_forward"),
        ("stable_pretraining.losses.NTXEntLoss", "ssl_losses.NTXEntLoss"),
        ("stable_pretraining.callbacks.OnlineQueue", "ssl_callbacks.OnlineQueue"),
        ("stable_ssl.backbone.from_torchvision", "ssl_core.backbone.from_torchvision"),
        ("stable_pretraining.Module", "ssl_core.Module"),
        ("stable_pretraining.TeacherStudentWrapper", "ssl_core.TeacherStudentWrapper"),
        ("stable_pretraining.optim.lars.LARS", "ssl_core.optim.LARS"),
        (
            "stable_pretraining.optim.lr_scheduler.LinearWarmupCosineAnnealingLR",
            "ssl_core.optim.LinearWarmupCosineAnnealingLR",
        ),
        ("stable_ssl.data.DataModule", "ssl_train.data.DataModule"),
        ("stable_pretraining.data.datasets.get_dataset", "ssl_data.datasets.get_dataset"),
        ("stable_pretraining.data.fold_views", "ssl_data.fold_views"),
        ("stable_pretraining.data.presets.simclr_views", "ssl_data.presets.simclr_views"),
    ],
)
def test_foreign_names_map_to_our_objects(dotted: str, expected: str) -> None:
    assert translate(dotted) == expected
    assert get_object(translate(dotted)) is get_object(expected)


def test_other_names_are_left_alone() -> None:
    for name in ("torch.nn.Linear", "ssl_losses.NTXEntLoss", "stable_ssl", "stable_ssl_x.a"):
        assert translate(name) == name


def test_translate_config_rewrites_strings_and_keeps_interpolations() -> None:
    cfg = OmegaConf.create(
        {
            "module": {
                "_target_": "stable_ssl.Module",
                "forward": "stable_ssl.forward.byol",
                "loss": {"_target_": "stable_pretraining.losses.BYOLLoss"},
                "width": 3,
            },
            "callbacks": [{"_target_": "stable_ssl.callbacks.OnlineKNN", "name": "stable_ssl"}],
            "ref": "${module.forward}",
        }
    )
    translate_config(cfg)
    assert cfg.module._target_ == "ssl_core.Module"
    assert cfg.module.forward == "ssl_forwards.byol_forward"
    assert cfg.module.loss._target_ == "ssl_losses.BYOLLoss"
    assert cfg.callbacks[0]._target_ == "ssl_callbacks.OnlineKNN"
    assert cfg.callbacks[0].name == "stable_ssl"  # not a dotted name: unchanged
    assert OmegaConf.is_interpolation(cfg, "ref") and cfg.ref == "ssl_forwards.byol_forward"


@pytest.mark.slow
def test_built_wheels_ship_no_package_named_after_another_project(tmp_path: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    proc = subprocess.run(
        [uv, "build", "--all-packages", "--wheel", "--out-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheels = sorted(tmp_path.glob("*.whl"))
    assert {w.name.split("-")[0] for w in wheels} >= {"ssl_train", "ssl_core", "ssl_losses"}
    tops: set[str] = set()
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            tops |= {n.split("/")[0] for n in zf.namelist() if ".dist-info" not in n}
    assert "sslkit" in tops and "ssl_train" in tops
    assert not tops & set(FOREIGN), tops
