"""End-to-end runs on an image folder (real PNG/JPEG files, 2 worker processes): a docs-style
module-only config through ``ssl-train``, and SIGKILL mid-epoch + resume with workers."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_jpeg, write_file, write_png

from ssl_train.runner import SIGKILL_ENV


def _cli() -> list[str]:
    script = shutil.which("ssl-train") or str(Path(sys.executable).with_name("ssl-train"))
    return [script] if Path(script).exists() else [sys.executable, "-m", "ssl_train.cli"]


def _env() -> dict[str, str]:
    return {**os.environ, "HYDRA_FULL_ERROR": "1"}


DOCS_CONFIG = """\
module:
  _target_: stable_ssl.Module
  forward: stable_ssl.forward.simclr_forward
  backbone:
    _target_: ssl_core.backbone.SmallResNet
    in_channels: 3
    widths: [8, 16]
    blocks: 1
  projector:
    _target_: stable_ssl.backbone.MLP
    in_features: 16
    hidden: 32
    out_features: 16
  simclr_loss:
    _target_: stable_ssl.losses.NTXEntLoss
    temperature: 0.5
callbacks:
  - _target_: stable_ssl.callbacks.OnlineProbe
    name: docs_probe
    input: embedding
    target: label
    probe: {_target_: torch.nn.Linear, in_features: 16, out_features: 2}
"""


def _image_folder(root: Path, per_class: int = 16) -> Path:
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", per_class), ("val", 4)):
        for c in range(2):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                img = (torch.rand(3, 1, 1, generator=g) * 120 + 60 * c).expand(3, 20, 24)
                img = (img + torch.rand(3, 20, 24, generator=g) * 40).to(torch.uint8)
                if i % 2:
                    write_file(str(folder / f"{i}.jpg"), encode_jpeg(img))
                else:
                    write_png(img, str(folder / f"{i}.png"))
    return root


def _data_args(root: Path) -> list[str]:
    return [
        "data=imagefolder",
        f"data.root={root}",
        "data.num_classes=2",
        "data.image_size=16",
        "data.num_workers=2",
        "data.train.batch_size=8",
        "data.val.batch_size=8",
        "callbacks.knn.queue_length=32",
        "callbacks.knn.k=5",
        "progress_bar=none",
        "summary=false",
    ]


@pytest.mark.slow
def test_docs_style_module_only_config_runs_through_ssl_train(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "simclr_docs.yaml").write_text(DOCS_CONFIG)
    run_dir = tmp_path / "run"
    args = ["--config-dir", str(tmp_path / "conf"), "--config-name", "simclr_docs"]
    args += [*_data_args(root), "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(_cli() + args, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on_after_batch_transfer" not in proc.stderr  # no Lightning hook-override warning
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] == 4 and summary["data"] == {"skipped_files": 0}
    assert "val/docs_probe_top1" in summary["metrics"] and "val/probe_top1" in summary["metrics"]


@pytest.mark.slow
def test_sigkill_mid_epoch_with_workers_then_resume_matches(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "images")  # 32 train images, batch 8: 4 steps per epoch
    common = [*_data_args(root), "data.image_size=16", "backbone.widths=[8,16]"]
    common += ["trainer.max_epochs=2", "trainer.deterministic=true", "checkpoint.every_n_steps=3"]
    reference = tmp_path / "reference"
    killed = tmp_path / "killed"
    ok = subprocess.run(
        [*_cli(), *common, f"hydra.run.dir={reference}"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    proc = subprocess.run(
        [*_cli(), *common, f"hydra.run.dir={killed}"],
        capture_output=True,
        text=True,
        env={**_env(), SIGKILL_ENV: "7"},
        timeout=300,
    )
    assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), proc.stderr[-3000:]
    ckpt = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 6
    resumed = subprocess.run(
        [*_cli(), f"resume={killed}", "progress_bar=none", "summary=false"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref = json.loads((reference / "summary.json").read_text())["metrics"]
    res = json.loads((killed / "summary.json").read_text())["metrics"]
    for key in ("train/loss", "val/probe_top1", "val/knn_top1"):
        assert res[key] == ref[key], key
    ref_w = torch.load(reference / "backbone.pt", weights_only=True)
    res_w = torch.load(killed / "backbone.pt", weights_only=True)
    assert all(torch.equal(ref_w[k], res_w[k]) for k in ref_w)
