"""Alias of :mod:`ssl_callbacks`.

Example: ``stable_pretraining.callbacks.OnlineProbe``, ``.OnlineQueue``, ....
"""

from ssl_train._alias import lazy_alias

__getattr__, __dir__ = lazy_alias(__name__, ["ssl_callbacks"])
