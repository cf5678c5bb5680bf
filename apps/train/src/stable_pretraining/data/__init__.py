"""Alias of :mod:`ssl_data` plus the app's ``DataModule``.

Example: ``stable_pretraining.data.fold_views``.
"""

from ssl_train._alias import lazy_alias

__getattr__, __dir__ = lazy_alias(
    __name__,
    ["ssl_data", "ssl_train.data"],
    submodules={"sampler": ["ssl_data.sampler", "ssl_data"], "transforms": ["ssl_data.augment"]},
)
