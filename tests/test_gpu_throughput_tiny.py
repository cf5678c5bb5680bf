"""benchmarks/gpu_throughput.py --tiny: the GPU benchmark runs end to end on a CPU."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_run_writes_a_row_per_variant(tmp_path):
    out = tmp_path / "gpu_tiny.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_throughput.py"),
            "--tiny",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["tiny"] is True
    rows = result["rows"]
    variants = [row["variant"] for row in rows]
    assert variants[0] == "fp32" and len(set(variants)) == len(variants) >= 3
    baseline = rows[0]["images_per_s"]
    for row in rows:
        assert row["images_per_s"] > 0 and math.isfinite(row["loss"])
        # images/s = batch / step time, and the ratio is against the fp32 row of the same run
        assert math.isclose(row["images_per_s"], row["batch_size"] * 1e3 / row["ms_per_step"])
        assert math.isclose(row["ratio_vs_fp32"], row["images_per_s"] / baseline)
    assert "vs fp32" in done.stdout
