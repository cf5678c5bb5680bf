"""Alias of :mod:`ssl_data.datasets` (``stable_pretraining.data.datasets.get_dataset``)."""

from ssl_train._alias import lazy_alias

__getattr__, __dir__ = lazy_alias(__name__, ["ssl_data.datasets", "ssl_data"])
