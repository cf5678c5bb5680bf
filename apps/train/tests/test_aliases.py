"""stable_ssl / stable_pretraining resolve the public API's names to this toolkit's objects."""

import subprocess
import sys

import pytest
from hydra.utils import get_class, get_method


def test_import_stable_ssl_is_lazy() -> None:
    code = (
        "import sys, stable_ssl, stable_pretraining; "
        "names = ('torch', 'lightning', 'ssl_core', 'ssl_forwards'); "
        "heavy = [m for m in names if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_umbrella_names_are_ours() -> None:
    import ssl_callbacks
    import ssl_core
    import ssl_data
    import ssl_forwards
    import ssl_losses
    import stable_ssl as ssl

    assert ssl.Module is ssl_core.Module
    assert ssl.TeacherStudentWrapper is ssl_core.TeacherStudentWrapper
    assert ssl.forward.simclr_forward is ssl_forwards.simclr_forward
    assert ssl.losses.NTXEntLoss is ssl_losses.NTXEntLoss
    assert ssl.callbacks.OnlineProbe is ssl_callbacks.OnlineProbe
    assert ssl.data.fold_views is ssl_data.fold_views
    assert ssl.backbone.from_torchvision is ssl_core.backbone.from_torchvision
    assert ssl.backbone.SmallResNet is ssl_core.backbone.SmallResNet


@pytest.mark.parametrize(
    "dotted,expected",
    [
        ("stable_pretraining.forward.simclr_forward", "ssl_forwards.simclr_forward"),
        ("stable_pretraining.forward.simclr", "ssl_forwards.simclr_forward"),
        ("stable_pretraining.forward.nnclr_forward", "ssl_forwards.nnclr_forward"),
        ("stable_pretraining.losses.NTXEntLoss", "ssl_losses.NTXEntLoss"),
        ("stable_pretraining.callbacks.OnlineQueue", "ssl_callbacks.OnlineQueue"),
        ("stable_pretraining.backbone.from_torchvision", "ssl_core.backbone.from_torchvision"),
        ("stable_pretraining.Module", "ssl_core.Module"),
        ("stable_pretraining.optim.lars.LARS", "ssl_core.optim.LARS"),
        (
            "stable_pretraining.optim.lr_scheduler.LinearWarmupCosineAnnealingLR",
            "ssl_core.optim.LinearWarmupCosineAnnealingLR",
        ),
        ("stable_pretraining.data.DataModule", "ssl_train.data.DataModule"),
        ("stable_pretraining.data.datasets.get_dataset", "ssl_data.datasets.get_dataset"),
        ("stable_pretraining.data.fold_views", "ssl_data.fold_views"),
    ],
)
def test_dotted_names_resolve_like_hydra_does(dotted: str, expected: str) -> None:
    from hydra._internal.utils import _locate

    assert _locate(dotted) is _locate(expected)


def test_from_imports_work() -> None:
    import ssl_forwards
    import ssl_losses
    from stable_pretraining.forward import byol_forward
    from stable_ssl.losses import VICRegLoss

    assert byol_forward is ssl_forwards.byol_forward
    assert VICRegLoss is ssl_losses.VICRegLoss
    assert get_method("stable_ssl.forward.vicreg_forward") is ssl_forwards.vicreg_forward
    assert get_class("stable_ssl.losses.BarlowTwinsLoss") is ssl_losses.BarlowTwinsLoss


def test_unknown_name_lists_what_exists() -> None:
    import stable_ssl

    with pytest.raises(AttributeError) as err:
        _ = stable_ssl.losses.NTXentLos
    message = str(err.value)
    assert "NTXentLos" in message and "NTXEntLoss" in message
