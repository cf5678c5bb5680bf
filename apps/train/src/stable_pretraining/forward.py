"""Alias of :mod:`ssl_forwards`.

Example: ``stable_pretraining.forward.simclr_forward``; ``.simclr`` works too.
"""

from ssl_train._alias import lazy_alias

__getattr__, __dir__ = lazy_alias(__name__, ["ssl_forwards"], suffixes=("_forward",))
