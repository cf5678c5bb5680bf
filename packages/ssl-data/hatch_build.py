"""Build hook: compile the fused CPU augmentation kernel when the package is built or installed.

The kernel (``src/ssl_data/augment/_fused.c``, plain C without Python headers) is compiled here,
at build time, so that the default CPU augmentation path never compiles anything at run time.
One shared library per instruction-set level (``ssl_data.augment.fused`` loads the best one the
CPU runs, as torch's own kernels dispatch). Without a C compiler the package still builds, pure
Python, and CPU batches use the eager torch ops; the build says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # the tests import this file for build_kernels, without hatchling
    BuildHookInterface = object  # type: ignore[assignment,misc]

KERNEL_DIR = Path("src") / "ssl_data" / "augment"
SOURCE = "_fused.c"
MANIFEST = "_fused_prebuilt.json"
# Instruction-set levels, best first; the names are torch.backends.cpu.get_cpu_capability()'s.
X86_VARIANTS = {
    "AVX512": ["-march=x86-64-v4"],
    "AVX2": ["-march=x86-64-v3"],
    "DEFAULT": [],
}


def variants() -> dict[str, list[str]]:
    """Compiler flags per variant for the machine being built for."""
    if platform.machine().lower() in ("x86_64", "amd64"):
        return X86_VARIANTS
    return {"DEFAULT": []}


def build_kernels(directory: Path, compiler: str) -> dict[str, Any]:
    """Compile every variant into ``directory``; returns the manifest that was written."""
    source = directory / SOURCE
    built = {}
    for name, flags in variants().items():
        target = directory / f"_fused_{name.lower()}.so"
        cmd = [compiler, "-O3", *flags, "-Wno-psabi", "-shared", "-fPIC"]
        cmd += ["-o", str(target), str(source), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            built[name] = target.name
        else:
            print(f"ssl-data: {' '.join(cmd)} failed:\n{proc.stderr}", file=sys.stderr)
    manifest = {
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "machine": platform.machine(),
        "variants": built,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


class FusedKernelBuildHook(BuildHookInterface):
    """Compiles the kernel variants into the package and marks the wheel platform-specific."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        """Compile the kernels into the source tree and list them as the wheel's artefacts."""
        directory = Path(self.root) / KERNEL_DIR
        compiler = shutil.which(os.environ.get("CC", "cc"))
        if compiler is None:
            print(
                "ssl-data: no C compiler (cc or $CC), so the fused CPU augmentation kernel is not "
                "built; CPU batches use the eager torch ops. Install gcc and reinstall ssl-data "
                "to build it.",
                file=sys.stderr,
            )
            return
        manifest = build_kernels(directory, compiler)
        if not manifest["variants"]:
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["artifacts"] += [f"{KERNEL_DIR}/{MANIFEST}"]
        build_data["artifacts"] += [f"{KERNEL_DIR}/{f}" for f in manifest["variants"].values()]
