"""The umbrella import of the toolkit, under the names of the public stable-ssl API.

Configs and code written for the public stable-ssl API resolve to our packages:
``stable_ssl.Module`` is ``ssl_core.Module``, ``stable_ssl.forward.simclr_forward``
is ``ssl_forwards.simclr_forward``, ``stable_ssl.losses`` is ``ssl_losses``,
``stable_ssl.callbacks`` is ``ssl_callbacks``, ``stable_ssl.backbone`` is
``ssl_core.backbone``, ``stable_ssl.optim`` is ``ssl_core.optim`` and
``stable_ssl.data`` is ``ssl_data`` plus ``ssl_train.data.DataModule``. Everything is
imported lazily, on first attribute access.

Example:
    >>> import stable_ssl as ssl
    >>> ssl.losses.NTXEntLoss  # doctest: +SKIP
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
