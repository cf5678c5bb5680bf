"""Fused CPU view pipeline: one C loop per image instead of ~40 passes over the batch.

On CPU the eager batched ops are memory bound: each op reads and writes the whole batch, and a
SimCLR view at 96 px makes about 40 such passes. :class:`FusedViewPipeline` runs the standard
view chain ``RandomResizedCrop(+flip) -> ColorJitter -> RandomGrayscale -> GaussianBlur ->
Solarize -> Normalize`` (each after the crop optional, in this order) image by image while the
image stays in the core's cache, in a small C kernel (``_fused.c``). The kernel is compiled when
ssl-data is installed (``hatch_build.py``, one library per instruction-set level; the best one
the CPU runs is loaded, see :func:`prebuilt_kernel`), so the default path compiles nothing at
run time; CPU batches of such chains run in it by default (``Compose(..., fused=None)``) and in
the eager ops when the install had no C compiler. ``fused=True`` requires it and, without an
installed one, compiles it with the system C compiler once (cached on disk,
``python -m ssl_data.augment.fused`` ahead of time). ``benchmarks/augment.py`` measures it
against the eager pipeline and torchvision v2 per sample in the same run; ``torch.compile`` of
the same graph measured slower than eager on CPU, which is why this is hand-written.

The random parameters are drawn exactly as the eager transforms draw them (same generator
calls in the same order) and the kernel uses the same float32 formulas, so the fused and eager
paths give the same images up to float rounding (tested).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from ssl_data.augment._base import BatchTransform
from ssl_data.augment.blur import GaussianBlur, gaussian_kernels
from ssl_data.augment.color import (
    ColorJitter,
    Normalize,
    RandomGrayscale,
    Solarize,
    check_color_channels,
)
from ssl_data.augment.geometric import RandomResizedCrop, crop_axes

__all__ = [
    "FusedKernelUnavailable",
    "FusedViewPipeline",
    "load_kernel",
    "prebuilt_kernel",
    "prebuilt_library",
]

_SOURCE = Path(__file__).with_name("_fused.c")
# Written by hatch_build.py next to the libraries it compiled at install time.
_PREBUILT_MANIFEST = Path(__file__).with_name("_fused_prebuilt.json")
# torch.backends.cpu.get_cpu_capability() levels the install compiles for, best first.
_LEVELS = ("AVX512", "AVX2", "DEFAULT")
# Below this many output values per batch one thread is faster than waking a second one
# (measured: 256 views of 28 px, 0.48 ms on one thread vs 0.81 ms on two).
_PARALLEL_MIN_VALUES = 1 << 20
# Optional steps after the crop, in the only order the kernel applies them.
_STEPS = (ColorJitter, RandomGrayscale, GaussianBlur, Solarize, Normalize)


class FusedKernelUnavailable(RuntimeError):
    """The fused C kernel could not be built (no C compiler, or compilation failed)."""


def _cache_dir() -> Path:
    root = os.environ.get("SSL_DATA_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ssl_data" / "kernels"


def _cpu_fingerprint() -> str:
    """CPU model and flags: ``-march=native`` binaries are only reused on the same CPU type."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    keys = ("model name", "flags", "Features", "CPU part")
    wanted = [ln for ln in lines if ln.split(":")[0].strip() in keys]
    return platform.machine() + "\n" + "\n".join(sorted(set(wanted)))


def _compile(compiler: str, target: Path) -> None:
    """Compile ``_fused.c`` into ``target`` (atomically: parallel processes may race)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    errors = []
    try:
        for arch in (["-march=native"], []):
            cmd = [compiler, "-O3", *arch, "-shared", "-fPIC", "-o", tmp, str(_SOURCE), "-lm"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode == 0:
                os.replace(tmp, target)
                return
            errors.append(f"$ {' '.join(cmd)}\n{proc.stderr.strip()}")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    raise FusedKernelUnavailable("compiling the fused kernel failed:\n" + "\n".join(errors))


def _bind(library: Path) -> Any:
    """Load a compiled kernel and declare its C signature."""
    lib = ctypes.CDLL(str(library))  # CDLL calls release the GIL: threads run in parallel
    fn = lib.ssl_fused_views
    p, i = ctypes.c_void_p, ctypes.c_int
    fn.argtypes = [p, p, i, i, i, i, i, i, p, p, p, p, p, p, p, p, p, i, p, p, p, i, p]
    fn.argtypes += [ctypes.c_float, p, p, p, p]
    fn.restype = ctypes.c_int
    return fn


def source_sha256() -> str:
    """SHA-256 of ``_fused.c``, as the install's manifest records it."""
    return hashlib.sha256(_SOURCE.read_bytes()).hexdigest()


def runnable_levels() -> tuple[str, ...]:
    """The instruction-set levels this CPU runs, best first (an unknown one: the baseline)."""
    capability = torch.backends.cpu.get_cpu_capability()
    start = _LEVELS.index(capability) if capability in _LEVELS else len(_LEVELS) - 1
    return _LEVELS[start:]


def prebuilt_library() -> Path | None:
    """Path of the kernel compiled when ssl-data was installed, or ``None``.

    Of the libraries the install built, the one for the best instruction-set level this CPU
    runs, as ``torch.backends.cpu.get_cpu_capability()`` reports it (``ATEN_CPU_CAPABILITY``
    lowers it). ``None`` when the install had no C compiler, or when ``_fused.c`` changed since
    (reinstall ssl-data to rebuild).
    """
    try:
        manifest = json.loads(_PREBUILT_MANIFEST.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("source_sha256") != source_sha256():
        return None
    if manifest.get("machine") != platform.machine():
        return None
    for level in runnable_levels():
        name = manifest.get("variants", {}).get(level)
        if name and (_PREBUILT_MANIFEST.parent / name).is_file():
            return _PREBUILT_MANIFEST.parent / name
    return None


@functools.cache
def prebuilt_kernel() -> Any | None:
    """The installed kernel (:func:`prebuilt_library`) loaded, or ``None``; never compiles."""
    library = prebuilt_library()
    return None if library is None else _bind(library)


@functools.cache
def load_kernel() -> Any:
    """The installed kernel (:func:`prebuilt_kernel`), else one built now and cached on disk.

    The compiler is ``$CC`` or ``cc``; the shared library is cached under
    ``$SSL_DATA_CACHE_DIR`` (default ``~/.cache/ssl_data/kernels``), keyed by the source, the
    compiler and the CPU. The loaded library is cached for the process (read-only code).

    Raises:
        FusedKernelUnavailable: No installed kernel, no C compiler or the compilation failed;
            the message says how to fix it or how to use the eager pipeline instead.
    """
    installed = prebuilt_kernel()
    if installed is not None:
        return installed
    compiler = os.environ.get("CC", "cc")
    path = shutil.which(compiler)
    if path is None:
        raise FusedKernelUnavailable(
            f"no C compiler ({compiler!r} not found) to build ssl_data's fused CPU augmentation "
            "kernel; install one (Debian/Ubuntu: apt-get install gcc) or set CC, or use the "
            "default eager ops (Compose(..., fused=False))."
        )
    key = hashlib.sha256(
        _SOURCE.read_bytes() + path.encode() + _cpu_fingerprint().encode()
    ).hexdigest()[:16]
    target = _cache_dir() / f"ssl_data_fused_{key}.so"
    if not target.is_file():
        _compile(path, target)
    return _bind(target)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _axis(coord: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bilinear taps of ``F.grid_sample`` coordinates (align_corners=False, border padding)."""
    pos = ((coord + 1) * size - 1) / 2
    pos = pos.clamp_(0, size - 1)
    low = pos.floor()
    frac = (pos - low).contiguous()
    low_i = low.to(torch.int32)
    high_i = (low_i + 1).clamp_(max=size - 1)
    return low_i.contiguous(), high_i.contiguous(), frac


class FusedViewPipeline:
    """The fused kernel for one chain of transforms (see the module docstring).

    Args:
        transforms: ``RandomResizedCrop`` followed by any of ``ColorJitter``, ``RandomGrayscale``,
            ``GaussianBlur``, ``Solarize``, ``Normalize``, each at most once, in that order.

    Raises:
        ValueError: When the transforms do not form such a chain (:meth:`matches` says so).
    """

    def __init__(self, transforms: list[BatchTransform]) -> None:
        if not self.matches(transforms):
            raise ValueError(
                "FusedViewPipeline takes RandomResizedCrop followed by ColorJitter, "
                "RandomGrayscale, GaussianBlur, Solarize, Normalize (each optional, in this "
                f"order); got {[type(t).__name__ for t in transforms]}."
            )
        self.crop: RandomResizedCrop = transforms[0]  # type: ignore[assignment]
        self.steps = {type(t): t for t in transforms[1:]}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_key: tuple[int, int] | None = None

    @staticmethod
    def matches(transforms: list[Any]) -> bool:
        """Whether ``transforms`` is a chain the kernel implements."""
        if not transforms or type(transforms[0]) is not RandomResizedCrop:
            return False
        position = -1
        for t in transforms[1:]:
            if type(t) not in _STEPS or _STEPS.index(type(t)) <= position:
                return False
            position = _STEPS.index(type(t))
        return True

    def _executor(self, threads: int) -> ThreadPoolExecutor:
        # One pool per process (a forked DataLoader worker must not reuse its parent's threads).
        key = (os.getpid(), threads)
        if self._pool is None or self._pool_key != key:
            if self._pool is not None and self._pool_key and self._pool_key[0] == key[0]:
                self._pool.shutdown(wait=False)  # thread count changed: release the old threads
            self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ssl_data")
            self._pool_key = key
        return self._pool

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"], state["_pool_key"] = None, None  # executors do not pickle
        return state

    def __call__(
        self, image: torch.Tensor, generator: torch.Generator | None, kernel: Any
    ) -> torch.Tensor:
        """Run the chain on a CPU ``uint8`` or ``float32`` ``[B, C, H, W]`` batch.

        Parameters are drawn from ``generator`` in the same order as the eager transforms.
        """
        if image.dtype not in (torch.uint8, torch.float32):
            image = image.to(torch.float32)
        image = image.contiguous()
        n, c, h, w = image.shape
        dev = image.device
        crop = self.crop
        out_h, out_w = crop.size
        cp = crop.sample_params(n, h, w, dev, generator)
        gx, gy = crop_axes(
            cp["top"], cp["left"], cp["height"], cp["width"], (h, w), crop.size, cp["flip"]
        )
        x0, x1, wx = _axis(gx, w)
        y0, y1, wy = _axis(gy, h)

        jitter_args: tuple[Any, ...] = (None, None, None, 0)
        if (jit := self.steps.get(ColorJitter)) is not None:
            jp = jit.sample_params(n, dev, generator)
            enabled = list(jit._enabled) if jit.p > 0 else [False] * 4
            if (enabled[2] or enabled[3]) and jp["apply"].any():
                check_color_channels(c)
            mask = sum(1 << op for op in range(4) if enabled[op])
            apply = jp["apply"].to(torch.uint8)
            factors = torch.stack(
                [jp["brightness"], jp["contrast"], jp["saturation"], jp["hue"]], dim=1
            ).contiguous()
            order = jp["order"].to(torch.int64).contiguous()
            jitter_args = (_ptr(apply), _ptr(factors), _ptr(order), mask)
        gray = None
        if (gs := self.steps.get(RandomGrayscale)) is not None:
            gray = gs.sample_params(n, dev, generator)["apply"].to(torch.uint8)
            if gray.any():
                check_color_channels(c)
        blur, kernel_1d, ksize = None, None, 0
        if (gb := self.steps.get(GaussianBlur)) is not None:
            bp = gb.sample_params(n, dev, generator)
            gb.check_image_size((out_h, out_w))
            blur = bp["apply"].to(torch.uint8)
            kernel_1d = gaussian_kernels(gb.kernel_size, bp["sigma"]).contiguous()
            ksize = gb.kernel_size
        solarize, threshold = None, 0.0
        if (so := self.steps.get(Solarize)) is not None:
            solarize = so.sample_params(n, dev, generator)["apply"].to(torch.uint8)
            threshold = so.threshold
        mean = inv_std = None
        if (nm := self.steps.get(Normalize)) is not None:
            mean, inv_std = (t.contiguous() for t in nm.statistics(c))

        out = torch.empty(n, c, out_h, out_w, dtype=torch.float32)
        if n == 0:
            return out
        is_u8 = image.dtype == torch.uint8
        args = (
            _ptr(image) if is_u8 else None,
            None if is_u8 else _ptr(image),
            n,
            c,
            h,
            w,
            out_h,
            out_w,
            _ptr(y0),
            _ptr(y1),
            _ptr(wy),
            _ptr(x0),
            _ptr(x1),
            _ptr(wx),
            *jitter_args,
            _ptr(gray),
            _ptr(blur),
            _ptr(kernel_1d),
            ksize,
            _ptr(solarize),
            threshold,
            _ptr(mean),
            _ptr(inv_std),
            _ptr(out),
        )
        # Every thread (this one included) takes images from a shared counter until none is
        # left: pool threads that wake up late (milliseconds, in VMs) just take fewer images.
        counter = torch.zeros(1, dtype=torch.int32)
        args = (*args, _ptr(counter))
        threads = max(1, min(torch.get_num_threads(), n))
        if out.numel() < _PARALLEL_MIN_VALUES:
            threads = 1
        jobs = []
        if threads > 1:
            pool = self._executor(threads - 1)
            jobs = [pool.submit(kernel, *args) for _ in range(threads - 1)]
        codes = [kernel(*args)] + [j.result() for j in jobs]
        if any(code != 0 for code in codes):
            raise MemoryError("the fused augmentation kernel could not allocate scratch memory.")
        return out


if __name__ == "__main__":
    installed = prebuilt_library()
    if installed is not None:
        print(f"ssl_data fused kernel, installed: {installed}")
    else:  # build it once, ahead of training
        load_kernel()
        print(f"ssl_data fused kernel built for this machine under {_cache_dir()}")
