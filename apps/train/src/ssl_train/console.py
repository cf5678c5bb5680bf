"""A quiet console: each message once, no notices about things that are not misuse.

``ssl-train`` prints one line per message, the model summary, the progress bar and the final
summary table; Hydra's ``cli.log`` in the run directory keeps the full log.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

_LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
_TIP_LOGGER = "lightning.pytorch.utilities.rank_zero"


def route_lightning_logs_to_root() -> None:
    """Send Lightning's log records through the root handlers only (Hydra's console and file).

    ``import lightning`` adds a console handler of its own while records also propagate to the
    root logger Hydra configures, so every INFO line was printed twice.
    """
    if not logging.getLogger().handlers:
        return
    import lightning  # noqa: F401 - its import adds the handler removed below

    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True


class _DropTip(logging.Filter):
    """Lightning advertises its hosted logger (litlogger) at the start of every fit."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence, while a run is built and trained, the notices that are not our misuse."""
    tip_filter = _DropTip()
    tip_logger = logging.getLogger(_TIP_LOGGER)
    tip_logger.addFilter(tip_filter)
    with warnings.catch_warnings():
        # Lightning 2.6's own pytree helper uses torch's deprecated LeafSpec check.
        warnings.filterwarnings(
            "ignore",
            message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
            category=FutureWarning,
        )
        # ssl_core.Module runs its batch transforms in on_after_batch_transfer on purpose and
        # our DataModule defines no such hook, so Lightning's "which one is used" notice has no
        # fix to make.
        warnings.filterwarnings(
            "ignore",
            message=r"You have overridden `on_after_batch_transfer` in `LightningModule` but have "
            r"passed in a `LightningDataModule`",
        )
        try:
            yield
        finally:
            tip_logger.removeFilter(tip_filter)
