"""Config composition and the errors of item 8: unknown names, typos, missing data."""

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from ssl_train import ConfigError, compose
from ssl_train.config import app_overrides, resume_config
from ssl_train.runner import build, prepare

TINY = [
    "data.train.limit=32",
    "data.val.limit=32",
    "data.train.batch_size=16",
    "data.val.batch_size=16",
    "progress_bar=none",
    "summary=false",
]


def test_default_config_is_simclr_on_the_embedded_subset() -> None:
    cfg, _, _ = prepare(compose([]), run_dir="unused")
    assert cfg.module.forward == "ssl_forwards.simclr_forward"
    assert cfg.data.name == "fashion_mnist_embedded"
    assert cfg.backbone._target_ == "ssl_core.backbone.SmallResNet"
    assert cfg.embedding_dim == 256  # read from the backbone
    assert cfg.module.projector.in_features == 256
    assert set(cfg.callbacks) == {"probe", "knn"}


def test_embedding_dim_follows_the_backbone() -> None:
    cfg, _, _ = prepare(compose(["backbone=resnet18"]), run_dir="unused")
    assert cfg.embedding_dim == 512
    assert cfg.callbacks.probe.probe.in_features == 512


@pytest.mark.parametrize(
    "group,bad", [("method", "simclrr"), ("data", "cifar11"), ("backbone", "rn18")]
)
def test_unknown_group_choice_lists_the_choices(group: str, bad: str) -> None:
    with pytest.raises(MissingConfigException) as err:
        compose([f"{group}={bad}"])
    message = str(err.value)
    assert f"Available options in '{group}'" in message
    expected = {"method": "barlow_twins", "data": "cifar10", "backbone": "resnet18"}[group]
    assert expected in message


def test_typo_in_an_override_fails_with_the_key_path() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose(["trainer.max_epoch=3"])
    assert "trainer.max_epoch" in str(err.value.__cause__ or err.value)


@pytest.mark.parametrize(
    "override,path,hint",
    [
        ("+module.simclr_loss.temprature=0.3", "module.simclr_loss.temprature", "temperature"),
        ("+trainer.max_epoch=3", "trainer.max_epoch", "max_epochs"),
        ("+callbacks.knn.queue_lenght=5", "callbacks.knn.queue_lenght", "queue_length"),
        ("++checkpoint.evry_n_steps=5", "checkpoint.evry_n_steps", "every_n_steps"),
        ("++seeed=1", "seeed", "seed"),
    ],
)
def test_typos_in_config_files_fail_with_the_key_path(override: str, path: str, hint: str) -> None:
    with pytest.raises(ConfigError) as err:
        prepare(compose([override]), run_dir="unused")
    message = str(err.value)
    assert f"'{path}'" in message and hint in message


def test_unknown_target_names_the_path_and_the_alternatives() -> None:
    with pytest.raises(ConfigError) as err:
        prepare(compose(["module.simclr_loss._target_=ssl_losses.NTXentLoss"]), run_dir="unused")
    message = str(err.value)
    assert "module.simclr_loss._target_" in message and "NTXEntLoss" in message


def test_app_overrides_force_add_app_settings_only() -> None:
    assert app_overrides(["seed=3", "checkpoint.mode=min", "trainer.max_epochs=1", "+x=1"]) == [
        "++seed=3",
        "++checkpoint.mode=min",
        "trainer.max_epochs=1",
        "+x=1",
    ]


def test_nnclr_without_its_queue_names_the_config_line(tmp_path: Path) -> None:
    """The app adds no callback by method: a missing queue is an error giving the line to add."""
    from ssl_train.runner import run

    overrides = ["method=nnclr", "callbacks.nnclr_queue=null", "trainer.max_steps=1", *TINY]
    with pytest.raises(ConfigError) as err:
        run(compose(overrides), run_dir=tmp_path)
    message = str(err.value)
    assert "'nnclr_support_set'" in message
    assert "callbacks:\n  nnclr_support_set: {_target_: ssl_callbacks.OnlineQueue, key: " in message


def test_teacher_student_wrapper_without_its_callback_names_the_config_line(
    tmp_path: Path,
) -> None:
    from ssl_callbacks import TeacherStudentCallback

    cfg, run_dir, _ = prepare(compose(["method=byol", *TINY]), run_dir=tmp_path)
    _, _, trainer, _ = build(cfg, run_dir)
    assert sum(isinstance(c, TeacherStudentCallback) for c in trainer.callbacks) == 1

    cfg, run_dir, _ = prepare(
        compose(["method=byol", "callbacks.teacher_ema=null", *TINY]), run_dir=tmp_path
    )
    with pytest.raises(ConfigError) as err:
        build(cfg, run_dir)
    assert "TeacherStudentWrapper" in str(err.value)
    assert "callbacks:\n  teacher_ema: {_target_: ssl_callbacks.TeacherStudentCallback}" in str(
        err.value
    )


def test_the_runner_names_no_method() -> None:
    """Method-specific wiring lives in the method configs, never in the app's code."""
    source = Path(__file__).resolve().parents[1] / "src" / "ssl_train"
    for file in ("runner.py", "assembly.py", "callbacks.py"):
        code = (source / file).read_text().lower()
        for name in ("ssl_forwards", "nnclr", "byol", "_auto_callbacks"):
            assert name not in code, (file, name)


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    from ssl_data import DatasetUnavailableError
    from ssl_train.runner import run

    with pytest.raises(DatasetUnavailableError, match="download"):
        run(compose(["data=cifar10", f"data.root={tmp_path}/nothing", *TINY]), run_dir=tmp_path)


def test_download_hint_is_the_exact_command() -> None:
    from ssl_train.cli import download_hint

    hydra_cfg = OmegaConf.create(
        {
            "overrides": {"task": ["data=cifar10", "data.root=/d"]},
            "job": {"config_name": "config"},
        }
    )
    hint = download_hint(OmegaConf.create({"data": {"root": "/d"}}), hydra_cfg)
    assert hint.endswith("ssl-train data=cifar10 data.root=/d data.download=true")


def test_resume_config_reapplies_value_overrides_and_guards_groups(tmp_path: Path) -> None:
    OmegaConf.save(
        OmegaConf.create({"seed": 1, "trainer": {"max_epochs": 2}}), tmp_path / "config.yaml"
    )
    OmegaConf.save(OmegaConf.create({"method": "byol"}), tmp_path / "choices.yaml")
    cfg = OmegaConf.create({"resume": str(tmp_path)})
    out = resume_config(cfg, tmp_path, ["resume=x", "trainer.max_epochs=5", "method=byol"])
    assert out.trainer.max_epochs == 5 and out.seed == 1
    with pytest.raises(ConfigError, match="method=byol"):
        resume_config(cfg, tmp_path, ["method=simclr"])
