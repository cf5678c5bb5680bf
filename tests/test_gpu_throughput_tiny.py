"""benchmarks/gpu_throughput.py --tiny: the GPU benchmark runs end to end on a CPU."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNERS = {"hand", "ours", "stable-pretraining", "lightly"}
VARIANTS = ["fp32", "bf16", "bf16 + channels_last + compile"]


@pytest.mark.slow
def test_tiny_run_writes_a_row_per_setting_variant_and_runner(tmp_path):
    # one tiny setting keeps this test short; the budget leaves room for the compile variant
    args = ["--tiny", "--settings", "small-resnet", "--budget-s", "120"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_throughput.py"), str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_throughput.json").read_text())
    assert result["tiny"] is True
    rows = result["rows"]
    assert {(r["variant"], r["runner"]) for r in rows} == {
        (v, r) for v in VARIANTS for r in RUNNERS
    }
    measured = {(r["variant"], r["runner"]): r for r in rows if "images_per_s" in r}
    # our two runners always run (the peers are skipped with a reason when not installed)
    assert {("fp32", "hand"), ("fp32", "ours"), ("bf16", "hand"), ("bf16", "ours")} <= set(measured)
    for row in rows:
        if "images_per_s" not in row:
            assert row["skipped"], row  # every row that did not run says why
            continue
        assert row["images_per_s"] > 0 and math.isfinite(row["loss"])
        # images/s = source images per step / step time
        assert math.isclose(row["images_per_s"], row["batch_size"] * 1e3 / row["ms_per_step"])
    # the table comes last and shows ours / hand from the same run's rows
    table = done.stdout[done.stdout.rindex("images/s (source images") :]
    bf16 = [line for line in table.splitlines() if " bf16 " in line and "compile" not in line]
    ratio = measured[("bf16", "ours")]["images_per_s"] / measured[("bf16", "hand")]["images_per_s"]
    assert f"{ratio:.3f}" in bf16[0]
    extras = {e["setting"]: e for e in result["extras"]}
    assert "no CUDA" in next(iter(extras.values()))["sync_debug"]
    assert "dino_available" in extras["dino vit-s/16 2x224+6x96 b128"]["skipped"]
    assert next(iter(extras.values()))["augment_ms_ours"] > 0
