"""End-to-end runs of the app on tiny data: every method, the examples, the CLI with multirun,
SIGKILL + resume, and a 2-process CPU DDP run."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ssl_train import compose, run
from ssl_train.runner import SIGKILL_ENV

TINY = [
    "data.train.limit=64",
    "data.val.limit=32",
    "data.train.batch_size=16",
    "data.val.batch_size=32",
    "callbacks.knn.queue_length=64",
    "progress_bar=none",
    "summary=false",
]
METHODS = ["simclr", "nnclr", "byol", "vicreg", "barlow_twins", "supervised"]


def _cli() -> list[str]:
    script = shutil.which("ssl-train") or str(Path(sys.executable).with_name("ssl-train"))
    return [script] if Path(script).exists() else [sys.executable, "-m", "ssl_train.cli"]


def _env() -> dict[str, str]:
    return {**os.environ, "HYDRA_FULL_ERROR": "1"}  # same thread count as in-process runs


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_a_few_steps(method: str, tmp_path: Path) -> None:
    # 32 samples at batch 16: one 2-step epoch, then validation (probe and kNN)
    overrides = [f"method={method}", "trainer.max_epochs=1", "data.train.limit=32"]
    overrides += [t for t in TINY if not t.startswith("data.train.limit")]
    result = run(compose(overrides), run_dir=tmp_path)
    assert result is not None
    loss = result.metrics["train/loss"]
    assert loss == loss and abs(loss) < 1e4  # finite
    assert 0.0 <= result.metrics["val/probe_top1"] <= 1.0
    assert 0.0 <= result.metrics["val/knn_top1"] <= 1.0
    if method == "supervised":  # the loss is computed whenever labels are present
        assert 0.0 < result.metrics["val/loss"] < 1e4
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simclr_spt", "nnclr_spt", "byol_spt"])
def test_public_shape_examples_run(name: str, tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[1] / "configs" / "examples"
    assert (examples / f"{name}.yaml").is_file()
    overrides = [
        "+data.train.limit=32",
        "+data.val.limit=32",
        "data.train.batch_size=16",
        "data.val.batch_size=32",
        "+trainer.max_steps=2",
        "progress_bar=none",
        "summary=false",
    ]
    result = run(compose(overrides, config_name=name, config_dir=examples), run_dir=tmp_path)
    assert result is not None and result.metrics["train/loss"] == result.metrics["train/loss"]
    assert any(k.startswith("val/") for k in result.metrics)


@pytest.mark.slow
def test_cli_multirun_writes_every_output(tmp_path: Path) -> None:
    """``ssl-train -m`` with two methods; each job's run dir has the full set of outputs."""
    args = [
        "-m",
        "method=simclr,vicreg",
        "trainer.max_epochs=2",
        "checkpoint.every_n_steps=2",
        f"hydra.sweep.dir={tmp_path}",
        *[t for t in TINY if t != "summary=false"],
    ]
    proc = subprocess.run(_cli() + args, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("images/s (train)") == 2  # the rich summary table, once per job
    assert "Load the backbone:" in proc.stdout
    for job in ("0", "1"):
        run_dir = tmp_path / job
        for name in (
            "config.yaml",
            "metrics.csv",
            "checkpoints/last.ckpt",
            "backbone.pt",
            "load_backbone.py",
            "plots/loss.png",
            "plots/accuracy.png",
            "summary.json",
        ):
            assert (run_dir / name).is_file(), name
        assert list((run_dir / "checkpoints").glob("best-*.ckpt"))
        summary = json.loads((run_dir / "summary.json").read_text())
        assert len(summary["history"]) == 2
        assert summary["images_per_s"] > 0
        # the backbone loads in plain torch (weights_only) into a freshly built network
        from ssl_core.backbone import SmallResNet

        net = SmallResNet(in_channels=1)
        net.load_state_dict(torch.load(run_dir / "backbone.pt", weights_only=True))
        assert "SmallResNet(in_channels=1" in (run_dir / "load_backbone.py").read_text()
        header = (run_dir / "metrics.csv").read_text().splitlines()[0]
        assert "val/probe_top1" in header and "train/loss_epoch" in header


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    common = [
        "trainer.max_epochs=2",
        "trainer.deterministic=true",
        "checkpoint.every_n_steps=3",
        "trainer.log_every_n_steps=1",
        *TINY,
    ]  # 4 steps per epoch: last.ckpt after step 3 and 4 (epoch end) and 6 (mid-epoch 2)
    reference = run(compose(common), run_dir=tmp_path / "reference")
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [*_cli(), *common, f"hydra.run.dir={killed}"],
        capture_output=True,
        text=True,
        env={**_env(), SIGKILL_ENV: "7"},
        timeout=300,
    )
    assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), proc.stderr[-3000:]
    assert not (killed / "summary.json").exists()
    assert "fault" not in OmegaConf.load(killed / "config.yaml")  # a test hook is no config key
    ckpt = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6
    # the StatefulDataLoader's own position, saved by Lightning's fit loop
    assert ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"]

    resumed = run(compose([f"resume={killed}"]), run_dir=tmp_path / "unused")
    assert resumed is not None and reference is not None
    assert resumed.run_dir == killed.resolve()
    for key in ("train/loss", "val/probe_top1", "val/knn_top1", "val/knn_top5"):
        assert resumed.metrics[key] == reference.metrics[key], key
    ref_w = torch.load(tmp_path / "reference" / "backbone.pt", weights_only=True)
    res_w = torch.load(killed / "backbone.pt", weights_only=True)
    assert all(torch.equal(ref_w[k], res_w[k]) for k in ref_w)
    # the merged metrics.csv has every step once, steps 6-7 from the resumed process
    rows = (killed / "metrics.csv").read_text().splitlines()
    steps = [r.split(",")[2] for r in rows[1:] if r.split(",")[3]]
    assert steps == [str(i) for i in range(8)]


@pytest.mark.slow
@pytest.mark.ddp
def test_two_process_cpu_ddp_run(tmp_path: Path) -> None:
    args = [
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path}",
        *TINY,
    ]
    proc = subprocess.run(_cli() + args, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["world_size"] == 2
    # 64 samples over 2 ranks at batch 16: 2 optimiser steps per epoch
    assert summary["global_step"] == 2
    assert 0.0 <= summary["metrics"]["val/probe_top1"] <= 1.0


def test_cli_destroys_the_process_group_a_run_left_behind(tmp_path: Path) -> None:
    """A live gloo group can abort the process at exit, so the CLI destroys it after a run."""
    import torch.distributed as dist

    from ssl_train.cli import _release_process_group

    _release_process_group()  # no group: nothing to do, no error
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        assert dist.is_initialized()
        _release_process_group()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow
def test_cli_run_dir_override_is_where_the_run_is_written(tmp_path: Path) -> None:
    """``ssl-train run_dir=X`` writes into X (not into Hydra's dated output directory)."""
    target = tmp_path / "explicit"
    args = [
        "trainer.max_epochs=1",
        f"run_dir={target}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        "plots=false",
        *TINY,
    ]
    proc = subprocess.run(_cli() + args, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.yaml", "summary.json", "backbone.pt", "checkpoints/last.ckpt"):
        assert (target / name).is_file(), name
    assert not (tmp_path / "hydra" / "summary.json").exists()


@pytest.mark.slow
def test_default_console_prints_each_line_once(tmp_path: Path) -> None:
    """A default ``ssl-train`` (rich bar, summary table) prints no line twice and no notices."""
    args = [
        "trainer.max_epochs=1",
        "trainer.log_every_n_steps=1",
        "checkpoint.every_n_steps=2",  # saves mid-epoch and at the epoch end
        "data.train.limit=64",
        "data.val.limit=32",
        "data.train.batch_size=16",
        "callbacks.knn.queue_length=64",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.run(_cli() + args, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    # a message printed by two handlers differs only by a level prefix: compare without it
    lines = [re.sub(r"^(INFO|WARNING): ", "", line.rstrip()) for line in console.splitlines()]
    lines = [line for line in lines if line.strip()]
    repeated = sorted({line for line in lines if lines.count(line) > 1})
    assert not repeated, repeated
    for notice in ("was not set", "litlogger", "on_after_batch_transfer", "LeafSpec"):
        assert notice not in console, notice
    assert "GPU available" in console and "Total params" in console  # Lightning's lines, once
    assert "train/loss" in console and "images_per_s" in console and "v_num" not in console
    assert "images/s (train)" in console  # the summary table
    log = (tmp_path / "cli.log").read_text()
    assert "GPU available" in log and "Trainer.fit` stopped" in log  # the full log


@pytest.mark.slow
@pytest.mark.parametrize("method", ["nnclr", "byol"])
def test_permuted_callbacks_give_a_bit_identical_run(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The method's callbacks (queue, EMA) and the evaluation ones in reverse order: same run."""
    from ssl_train import runner

    overrides = [f"method={method}", "trainer.max_epochs=2", "trainer.deterministic=true", *TINY]
    first = run(compose(overrides), run_dir=tmp_path / "forward")
    original = runner.callback_nodes
    monkeypatch.setattr(runner, "callback_nodes", lambda cfg: original(cfg)[::-1])
    second = run(compose(overrides), run_dir=tmp_path / "reversed")
    assert first is not None and second is not None
    drop = [k for k in first.metrics if k.startswith("perf/")]  # wall-clock throughput
    assert {k: v for k, v in first.metrics.items() if k not in drop} == {
        k: v for k, v in second.metrics.items() if k not in drop
    }
    a = torch.load(tmp_path / "forward" / "backbone.pt", weights_only=True)
    b = torch.load(tmp_path / "reversed" / "backbone.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    states = [
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"]
        for d in (tmp_path / "forward", tmp_path / "reversed")
    ]
    assert sorted(states[0]) == sorted(states[1])  # the same callback states are saved
