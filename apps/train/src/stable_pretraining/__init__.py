"""``stable_pretraining``-compatible names backed by this toolkit.

Configs and code written for the public stable-pretraining API resolve to our packages:
``stable_pretraining.Module`` is ``ssl_core.Module``, ``stable_pretraining.forward.simclr_forward``
is ``ssl_forwards.simclr_forward``, ``stable_pretraining.losses`` is ``ssl_losses``,
``stable_pretraining.callbacks`` is ``ssl_callbacks``, ``stable_pretraining.backbone`` is
``ssl_core.backbone``, ``stable_pretraining.optim`` is ``ssl_core.optim`` and
``stable_pretraining.data`` is ``ssl_data`` plus ``ssl_train.data.DataModule``. Everything is
imported lazily, on first attribute access.

Example:
    >>> import stable_pretraining as spt
    >>> spt.losses.NTXEntLoss  # doctest: +SKIP
    <class 'ssl_losses.contrastive.NTXEntLoss'>
"""

from ssl_train._alias import lazy_alias

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_alias(
    __name__,
    ["ssl_core"],
    submodules={
        name: f"{__name__}.{name}"
        for name in ("forward", "losses", "callbacks", "backbone", "optim", "data")
    },
)
