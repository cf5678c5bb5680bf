"""Checkpoints never run code when read: every checkpoint the app writes loads with
``weights_only=True``, a crafted one is refused by resume and ssl-eval (its payload never runs)
unless the user opts in, and a write that fails part-way keeps the previous file."""

import collections
import logging
import pathlib
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from ssl_train import compose, evaluate, run
from ssl_train.checkpoint_io import (
    AtomicCheckpointIO,
    UnsafeCheckpointError,
    load_checkpoint,
    unsafe_globals,
)
from ssl_train.evaluation import EvaluationError
from ssl_train.evaluation.cli import main, parse_args

TINY = [
    "data.train.limit=32",
    "data.val.limit=32",
    "data.train.batch_size=16",
    "data.val.batch_size=32",
    "callbacks.knn.queue_length=64",
    "trainer.max_steps=2",
    "progress_bar=none",
    "summary=false",
    "plots=false",
]
EVAL = {"train_limit": 64, "test_limit": 32, "ks": [5], "linear": False, "progress": False}
EVAL_ARGS = ["train_limit=64", "test_limit=32", "k=5", "linear=false", "progress=false"]


class _Touch:
    """Unpickling this creates ``path`` (what a malicious checkpoint entry would do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


_Pair = collections.namedtuple("_Pair", ["a", "b"])


def _craft(src: Path, dst: Path, marker: Path) -> Path:
    """Copy a real checkpoint or state_dict and add one entry whose unpickling creates marker."""
    state = torch.load(src, weights_only=True)
    state["payload"] = _Touch(marker)
    torch.save(state, dst)
    assert not marker.exists()
    return dst


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-step default (SimCLR) run with hyper-parameters and the default callbacks."""
    out = tmp_path_factory.mktemp("default")
    run(compose([*TINY, "+module.hparams.note=hi", "+module.hparams.sizes=[1,2]"]), run_dir=out)
    return out


def _tensors(obj: object) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list | tuple) else []
    return [t for v in values for t in _tensors(v)]


def _all_checkpoints_load_with_weights_only(run_dir: Path) -> list[dict]:
    files = sorted((run_dir / "checkpoints").glob("*.ckpt"))
    assert len(files) == 2, files  # last.ckpt and best-*.ckpt
    loaded = []
    for path in files:
        assert unsafe_globals(path) == [], path
        loaded.append(torch.load(path, weights_only=True))
    return loaded


@pytest.mark.slow
def test_checkpoints_of_a_default_run_with_hparams_load_with_weights_only(
    default_run: Path,
) -> None:
    for ckpt in _all_checkpoints_load_with_weights_only(default_run):
        assert ckpt["hyper_parameters"] == {"note": "hi", "sizes": [1, 2]}
        assert {"RNGState", "LoaderState"} <= set(ckpt["callbacks"])
        assert ckpt["optimizer_states"] and ckpt["global_step"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nnclr", "byol"])
def test_checkpoints_of_nnclr_and_byol_runs_load_with_weights_only(
    method: str, tmp_path: Path
) -> None:
    run(compose([*TINY, f"method={method}"]), run_dir=tmp_path)
    for ckpt in _all_checkpoints_load_with_weights_only(tmp_path):
        if method == "nnclr":  # the support-set queue's state
            (queue,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("OnlineQueue")]
            assert any(t.numel() > 0 for t in _tensors(queue))
        else:  # the EMA teacher
            assert any(k.startswith("backbone.teacher.") for k in ckpt["state_dict"])


def test_omegaconf_hparams_are_written_as_plain_types(tmp_path: Path) -> None:
    """Lightning stores DictConfig hparams (and their class) as is; the plugin writes dicts."""
    hparams = OmegaConf.create({"lr": 0.1, "dims": [1, 2], "sub": {"x": "${lr}"}})
    checkpoint = {"hyper_parameters": hparams, "hparams_type": DictConfig, "w": torch.ones(2)}
    assert unsafe_globals_of(checkpoint, tmp_path)  # as Lightning gives it: not plain data
    AtomicCheckpointIO().save_checkpoint(checkpoint, tmp_path / "a.ckpt")
    loaded = torch.load(tmp_path / "a.ckpt", weights_only=True)
    assert loaded["hyper_parameters"] == {"lr": 0.1, "dims": [1, 2], "sub": {"x": 0.1}}
    assert "hparams_type" not in loaded and torch.equal(loaded["w"], torch.ones(2))


def unsafe_globals_of(obj: object, tmp_path: Path) -> list[str]:
    torch.save(obj, tmp_path / "raw.pt")
    return unsafe_globals(tmp_path / "raw.pt")


def test_a_state_that_weights_only_refuses_is_not_written(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, target)
    with pytest.raises(UnsafeCheckpointError, match=r"_Pair.*plain types.*SAFE_GLOBALS"):
        io.save_checkpoint({"step": 2, "callbacks": {"x": _Pair(1, 2)}}, target)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_a_write_failing_part_way_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    old = {"global_step": 3, "state_dict": {"w": torch.arange(4.0)}}
    io.save_checkpoint(old, target)

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"global_step": 4, "state_dict": {"w": torch.zeros(4)}}, target)
    monkeypatch.undo()
    loaded = torch.load(target, weights_only=True)
    assert loaded["global_step"] == 3 and torch.equal(loaded["state_dict"]["w"], torch.arange(4.0))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]


@pytest.mark.slow
def test_runner_trainer_writes_through_the_atomic_plugin(default_run: Path) -> None:
    from ssl_train.runner import build, prepare

    cfg, run_dir, _ = prepare(compose(TINY), default_run / "rebuilt")
    _, _, trainer, _ = build(cfg, run_dir)
    io = trainer.strategy.checkpoint_io
    assert isinstance(io, AtomicCheckpointIO) and io.trusted is False


@pytest.mark.slow
def test_resume_refuses_a_crafted_checkpoint_unless_trusted(
    default_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(default_run, run_dir)
    marker = tmp_path / "pwned"
    last = run_dir / "checkpoints" / "last.ckpt"
    _craft(last, last, marker)

    with pytest.raises(UnsafeCheckpointError) as err:
        run(compose([f"resume={run_dir}"]))
    message = str(err.value)
    assert str(last) in message and "pathlib" in message and "resume_trusted=true" in message
    assert not marker.exists()

    with caplog.at_level(logging.WARNING, logger="ssl_train.checkpoint_io"):
        result = run(
            compose([f"resume={run_dir}", "resume_trusted=true"]),
            overrides=["trainer.max_steps=3"],
        )
    assert marker.exists()  # the user opted in: the file was fully unpickled
    logged = [r.message for r in caplog.records if "resume_trusted=true" in r.message]
    assert any(str(last) in m and "weights_only=False" in m for m in logged)
    assert result is not None and result.run_dir == run_dir.resolve()
    assert torch.load(last, weights_only=True)["global_step"] == 3  # rewritten as plain data
    assert "resume_trusted" not in (run_dir / "config.yaml").read_text()  # not sticky


@pytest.mark.slow
def test_ssl_eval_refuses_a_crafted_checkpoint_unless_trusted(
    default_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt_dir = tmp_path / "run" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    shutil.copy(default_run / "config.yaml", tmp_path / "run" / "config.yaml")
    marker = tmp_path / "pwned"
    crafted = _craft(default_run / "checkpoints" / "last.ckpt", ckpt_dir / "last.ckpt", marker)

    with pytest.raises(EvaluationError, match=r"not plain data.*--trust-checkpoint"):
        evaluate(crafted, **EVAL)
    with pytest.raises(SystemExit, match="ssl-eval --trust-checkpoint"):
        main([str(crafted), *EVAL_ARGS, f"output={tmp_path / 'x.json'}"])
    assert not marker.exists()

    assert parse_args([str(crafted), "--trust-checkpoint"])["trust_checkpoint"] is True
    with caplog.at_level(logging.WARNING, logger="ssl_train.checkpoint_io"):
        result = evaluate(crafted, trust_checkpoint=True, **EVAL)
    assert marker.exists() and 0.0 <= result["metrics"]["knn5_top1"] <= 1.0
    assert any("--trust-checkpoint" in r.message for r in caplog.records)


@pytest.mark.slow
def test_ssl_eval_of_a_backbone_file_with_arch_reads_no_config(
    default_run: Path, tmp_path: Path
) -> None:
    """A foreign config.yaml next to the weights is code; with arch= it is never read."""
    by_config = tmp_path / "made_by_config"
    shutil.copy(default_run / "backbone.pt", tmp_path / "backbone.pt")
    (tmp_path / "config.yaml").write_text(
        f"backbone:\n  _target_: pathlib.Path.touch\n  _args_: [{by_config}]\n"
    )

    result = evaluate(tmp_path / "backbone.pt", arch="small_resnet", **EVAL)
    assert result["arch"]["_target_"] == "ssl_core.backbone.SmallResNet"
    assert 0.0 <= result["metrics"]["knn5_top1"] <= 1.0
    marker = tmp_path / "pwned"
    _craft(tmp_path / "backbone.pt", tmp_path / "crafted.pt", marker)
    with pytest.raises(EvaluationError, match="not plain data"):
        evaluate(tmp_path / "crafted.pt", arch="small_resnet", **EVAL)
    assert not marker.exists() and not by_config.exists()
    # without arch= the config next to the file rebuilds the backbone: it runs (see the docs)
    with pytest.raises(EvaluationError, match="built a NoneType"):
        evaluate(tmp_path / "backbone.pt", **EVAL)
    assert by_config.exists()


def test_load_checkpoint_refuses_and_the_opt_in_loads(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"w": torch.ones(1), "payload": _Touch(marker)}, tmp_path / "x.pt")
    with pytest.raises(UnsafeCheckpointError, match=r"x\.pt.*pathlib.*--my-flag"):
        load_checkpoint(tmp_path / "x.pt", opt_in="--my-flag")
    assert not marker.exists()
    assert torch.equal(load_checkpoint(tmp_path / "x.pt", trusted=True)["w"], torch.ones(1))
    assert marker.exists()
