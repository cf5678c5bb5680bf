"""Forward + backward steps timed round by round, best of the rounds (shared by the benchmarks)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch


def fwd_bwd_step(
    module: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype = torch.bfloat16
) -> Callable[[], None]:
    """Forward (bf16 autocast unless ``dtype`` is float32) and backward of ``module`` on ``x``."""

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = module(x)
        out.float().square().mean().backward()

    return step


def _seconds(step: Callable[[], None], reps: int) -> float:
    """Mean wall time of ``reps`` calls of ``step``."""
    start = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - start) / reps


def best_seconds(
    steps: Mapping[str, Callable[[], None]],
    rounds: int,
    reps: int,
    before: Mapping[str, Callable[[], None]] | None = None,
) -> dict[str, float]:
    """Best over ``rounds`` of each step's mean time per call, the variants interleaved.

    Each step runs once untimed (warm-up), then every round times ``reps`` calls of each variant
    in turn, so that other work on the machine disturbs all of them alike; the best round is the
    least disturbed. ``before[name]``, when given, runs untimed before each of ``name``'s turns.
    """
    before = before or {}
    for name, step in steps.items():
        before.get(name, lambda: None)()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            before.get(name, lambda: None)()
            times[name].append(_seconds(step, reps))
    return {name: min(t) for name, t in times.items()}
