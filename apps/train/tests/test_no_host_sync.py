"""A default ssl-train run's training steps read no tensor on the host outside log batches.

Every host read of a device tensor makes the CPU wait for the GPU, so a step with one cannot
overlap the next step's launch. The run here is on CPU, with every read counted (a
``TorchFunctionMode`` probe) in the Module's batch hooks and in every callback's batch hooks;
reads are allowed only in the log batches (the first and every ``log_every_n_steps``-th), where
the deferred checks, the progress bar's copies and the throughput are read.
"""

from __future__ import annotations

import functools
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode

from ssl_train import compose
from ssl_train.runner import build, prepare

# ----------------------------------------------------------------- the probe

READS = frozenset(
    {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "__format__", "numpy"}
    | {"cpu", "unique", "unique_consecutive", "nonzero", "argwhere", "masked_select"}
)
CALLBACK_HOOKS = (
    "on_train_batch_start",
    "on_train_batch_end",
    "on_before_backward",
    "on_after_backward",
    "on_before_optimizer_step",
    "on_before_zero_grad",
)
MODULE_HOOKS = ("training_step", "on_train_batch_end", "on_after_batch_transfer")


def _read_name(func: Any, args: tuple, kwargs: dict) -> str | None:
    name = getattr(func, "__name__", "")
    if name in READS:
        return name
    if name in ("__getitem__", "__setitem__") and len(args) > 1:
        index = args[1] if isinstance(args[1], tuple) else (args[1],)
        if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
            return f"{name}[bool mask]"
    if name == "repeat_interleave" and "output_size" not in kwargs:
        repeats = args[1] if len(args) > 1 else kwargs.get("repeats")
        if isinstance(repeats, torch.Tensor):
            return "repeat_interleave(tensor repeats)"
    if name == "to" and "cpu" in (*args[1:], kwargs.get("device")):
        return "to('cpu')"  # a literal host target (not a device variable that is the CPU here)
    if name in ("tensor", "as_tensor") and kwargs.get("device") is not None:
        return f"{name}(device=...)"  # a blocking host-to-device copy
    return None


@dataclass
class SyncProbe:
    """Records ``(batch, hook, read, where) -> count`` while its mode is active.

    The batch is the 0-based training batch of ``trainer`` (its loop's count of batches
    fetched), so reads in the transfer hooks count towards the batch they prepare.
    """

    trainer: Any = None
    counts: Counter = field(default_factory=Counter)
    hook: str | None = None

    def mode(self) -> TorchFunctionMode:
        """The function mode that records reads inside wrapped hooks."""
        probe = self

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                read = _read_name(func, args, kwargs)
                if read is not None and probe.hook is not None:
                    stack = traceback.extract_stack()[:-1]
                    # non-capturable torch optimisers keep their step counter on the host (the
                    # training step itself runs inside optimizer.step(closure): not excluded)
                    if "torch/optim" not in stack[-1].filename:
                        own = [f for f in stack if "/torch/" not in f.filename]
                        where = f"{own[-1].filename.rsplit('/', 1)[-1]}:{own[-1].lineno}"
                        batch = probe.trainer.fit_loop.epoch_loop.batch_progress.total.ready - 1
                        probe.counts[(batch, probe.hook, read, where)] += 1
                return func(*args, **kwargs)

        return _Mode()

    def _wrap(self, owner: Any, name: str, label: str, *, starts_batch: bool = False) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def hooked(*args: Any, **kwargs: Any) -> Any:
            if starts_batch:
                trainer = owner._trainer
                if trainer is None or not trainer.training:
                    return original(*args, **kwargs)  # validation batches are not counted
            outer, self.hook = self.hook, label
            try:
                return original(*args, **kwargs)
            finally:
                self.hook = outer

        setattr(owner, name, hooked)

    def attach(self, module: Any, callbacks: list[Any]) -> None:
        """Wrap the module's batch hooks and each callback's batch hooks (instance attributes)."""
        self._wrap(module, "on_after_batch_transfer", "Module.on_after_batch_transfer",
                   starts_batch=True)  # fmt: skip
        self._wrap(module, "training_step", "Module.training_step")
        self._wrap(module, "on_train_batch_end", "Module.on_train_batch_end")
        for callback in callbacks:
            for hook in CALLBACK_HOOKS:
                self._wrap(callback, hook, f"{type(callback).__name__}.{hook}")

    def outside(self, log_batches: set[int], skip_hooks: tuple[str, ...] = ()) -> dict:
        """The reads in batches not in ``log_batches`` (hooks in ``skip_hooks`` left out)."""
        return {
            key: n
            for key, n in self.counts.items()
            if key[0] not in log_batches and key[1] not in skip_hooks
        }


# ----------------------------------------------------------------- the runs

EVERY = 4
BATCHES = 10
LOG_BATCHES = {0} | {b for b in range(BATCHES) if (b + 1) % EVERY == 0}  # {0, 3, 7}
TINY = [
    f"data.train.limit={16 * BATCHES}",
    "data.val.limit=32",
    "data.train.batch_size=16",
    "data.val.batch_size=32",
    "callbacks.knn.queue_length=64",
    "summary=false",
    "progress_bar=tqdm",
    "trainer.max_epochs=1",
    f"trainer.log_every_n_steps={EVERY}",
    # the fused augmentation kernel takes CPU batches only; on a GPU the views run in the eager
    # ops, which are what this CPU run must probe
    "data.views.fused=false",
]
# Lightning turns each progress-bar value into a number after every batch; the values are host
# copies made in log batches (checked below), so these conversions read no device.
PROGRESS_BAR_CONVERSION = "apply_func.py"
# the batch transform (augmentation) runs in the Module's on_after_batch_transfer
AUGMENT = "Module.on_after_batch_transfer"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One probed run per method, shared by the tests of this module."""
    cache: dict[str, tuple] = {}

    def get(method: str) -> tuple:
        if method not in cache:
            cache[method] = _run(method, tmp_path_factory.mktemp(method))
        return cache[method]

    return get


def _run(method: str, tmp_path: Path) -> tuple[SyncProbe, list, object]:
    cfg, run_dir, _ = prepare(compose([f"method={method}", *TINY]), tmp_path)
    datamodule, module, trainer, _ = build(cfg, run_dir)
    probe = SyncProbe(trainer)
    probe.attach(module, trainer.callbacks)
    bar_logs: list[tuple[int, str]] = []
    log = module.log

    def recording_log(name, value, *args, prog_bar=False, **kwargs):
        if prog_bar and probe.hook is not None:
            bar_logs.append((trainer.fit_loop.epoch_loop.batch_progress.total.ready - 1, name))
        return log(name, value, *args, prog_bar=prog_bar, **kwargs)

    module.log = recording_log
    with probe.mode():
        trainer.fit(module, datamodule=datamodule)
    assert trainer.global_step == BATCHES
    return probe, bar_logs, trainer


def _reads(probe: SyncProbe, *, our_only: bool) -> dict:
    ours = ("Module.", "ThroughputMonitor.", "LoaderState", "LastCheckpoint", "RNGState")
    return {
        key: n
        for key, n in probe.outside(LOG_BATCHES, skip_hooks=(AUGMENT,)).items()
        if not key[3].startswith(PROGRESS_BAR_CONVERSION)
        and (not our_only or key[1].startswith(ours))
    }


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simclr", "byol", "nnclr"])
def test_module_forwards_and_app_callbacks_read_nothing_outside_log_batches(method, runs):
    probe, bar_logs, trainer = runs(method)
    assert _reads(probe, our_only=True) == {}
    # the probe does see reads: the deferred checks and throughput are read in log batches
    read_batches = {key[0] for key in probe.counts if key[1].startswith("Module.on_train")}
    assert read_batches == LOG_BATCHES
    # the progress bar shows host copies logged only in log batches
    assert {b for b, _ in bar_logs} <= LOG_BATCHES
    assert {name for _, name in bar_logs} == {"loss", "perf/images_per_s"}
    assert set(trainer.progress_bar_metrics) == {"loss", "perf/images_per_s"}


@pytest.mark.slow
def test_every_callback_of_a_default_run_reads_nothing_outside_log_batches(runs):
    probe, _, _ = runs("simclr")
    assert _reads(probe, our_only=False) == {}


@pytest.mark.slow
def test_batch_augmentation_reads_nothing_outside_log_batches(runs):
    # the batched eager pipeline, what a GPU batch runs (TINY sets data.views.fused=false)
    probe, _, _ = runs("simclr")
    augment = {k: n for k, n in probe.outside(LOG_BATCHES).items() if k[1] == AUGMENT}
    assert augment == {}
