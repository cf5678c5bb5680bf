"""Several optimisers seen by Lightning as one (so accumulation, clipping and AMP keep working).

Lightning's automatic optimisation supports a single optimiser; its multi-optimiser path needs
manual optimisation, which disables ``accumulate_grad_batches`` and ``gradient_clip_val`` and
counts ``global_step`` once per optimiser. :class:`MultiOptimizer` instead presents several
optimisers (each over its own parameters, e.g. a predictor at another learning rate) as one:
one ``step`` runs the closure once and steps every optimiser, so every Trainer feature and the
meaning of ``global_step`` stay those of a single optimiser. Each optimiser keeps its own
scheduler, stepped at its own interval through :class:`AttachedScheduler`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any

import torch
from torch.optim import Optimizer


class _RoutedState(MutableMapping):
    """The union of the optimisers' ``state`` dicts; writes go to the owner of the parameter."""

    def __init__(self, optimizers: Sequence[Optimizer]) -> None:
        self._optimizers = optimizers

    def _owner(self, key: Any) -> Optimizer:
        for optimizer in self._optimizers:
            for group in optimizer.param_groups:
                if any(p is key for p in group["params"]):
                    return optimizer
        raise KeyError(key)

    def __getitem__(self, key: Any) -> Any:
        for optimizer in self._optimizers:
            if key in optimizer.state:
                return optimizer.state[key]
        raise KeyError(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._owner(key).state[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._owner(key).state[key]

    def __iter__(self) -> Iterator[Any]:
        for optimizer in self._optimizers:
            yield from optimizer.state

    def __len__(self) -> int:
        return sum(len(optimizer.state) for optimizer in self._optimizers)


class MultiOptimizer(Optimizer):
    """Several optimisers over disjoint parameters, stepped together as one.

    Args:
        optimizers: The optimisers; their parameters must be disjoint.
        names: A name per optimiser (used in error messages and ``repr``).

    Example:
        >>> import torch
        >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        >>> opt = MultiOptimizer(
        ...     [torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.AdamW(b.parameters())]
        ... )
    """

    def __init__(self, optimizers: Sequence[Optimizer], names: Sequence[str] | None = None) -> None:
        # Optimizer.__init__ is deliberately not called: the groups and states live in the
        # wrapped optimisers, and this object only forwards to them.
        if not optimizers:
            raise ValueError("MultiOptimizer needs at least one optimiser.")
        seen: set[int] = set()
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if id(p) in seen:
                        raise ValueError(
                            "A parameter is shared by two optimisers; make the module regexes "
                            "of the optimiser specs select disjoint parameters."
                        )
                    seen.add(id(p))
        self.optimizers = list(optimizers)
        self.names = list(names) if names is not None else [str(i) for i in range(len(optimizers))]
        self.defaults: dict[str, Any] = {}
        self._optimizer_step_pre_hooks: dict[int, Callable] = {}
        self._optimizer_step_post_hooks: dict[int, Callable] = {}

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The parameter groups of every optimiser (the same dicts, so edits reach them)."""
        return [group for optimizer in self.optimizers for group in optimizer.param_groups]

    @property
    def state(self) -> _RoutedState:  # type: ignore[override]
        """The per-parameter states of every optimiser."""
        return _RoutedState(self.optimizers)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Run ``closure`` once (forward and backward), then step every optimiser.

        Args:
            closure: Re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or ``None``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for optimizer in self.optimizers:
            optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every optimiser's parameters."""
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Return the state of every optimiser."""
        return {"names": list(self.names), "optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the states saved by :meth:`state_dict`."""
        states = state_dict["optimizers"]
        if len(states) != len(self.optimizers):
            raise ValueError(
                f"The checkpoint holds {len(states)} optimisers but this module builds "
                f"{len(self.optimizers)}; use the same optim spec as the run that saved it."
            )
        for optimizer, state in zip(self.optimizers, states, strict=True):
            optimizer.load_state_dict(state)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Not supported: add the group to one of the wrapped optimisers instead."""
        raise NotImplementedError(
            "Add parameter groups to one of MultiOptimizer.optimizers, not to the wrapper."
        )

    def __repr__(self) -> str:
        inner = ", ".join(
            f"{name}={type(o).__name__}"
            for name, o in zip(self.names, self.optimizers, strict=True)
        )
        return f"MultiOptimizer({inner})"


class AttachedScheduler:
    """A scheduler of one wrapped optimiser, reported to Lightning as attached to the wrapper.

    Args:
        scheduler: The scheduler of one of ``optimizer.optimizers``.
        optimizer: The :class:`MultiOptimizer` it belongs to.
    """

    def __init__(self, scheduler: Any, optimizer: MultiOptimizer) -> None:
        self.scheduler = scheduler
        self.optimizer = optimizer

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Step the wrapped scheduler."""
        self.scheduler.step(*args, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """Return the wrapped scheduler's state."""
        return self.scheduler.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the wrapped scheduler's state."""
        self.scheduler.load_state_dict(state_dict)

    def get_last_lr(self) -> list[float]:
        """Return the wrapped scheduler's last learning rates."""
        return self.scheduler.get_last_lr()
