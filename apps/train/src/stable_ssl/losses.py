"""Alias of :mod:`ssl_losses` (``stable_ssl.losses.NTXEntLoss``)."""

from ssl_train._alias import lazy_alias

__getattr__, __dir__ = lazy_alias(__name__, ["ssl_losses"])
