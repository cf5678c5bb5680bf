"""Alias of :mod:`ssl_core.backbone`.

Example: ``stable_pretraining.backbone.from_torchvision``, ``.MLP``, ....
"""

from ssl_train._alias import lazy_alias

__getattr__, __dir__ = lazy_alias(__name__, ["ssl_core.backbone", "ssl_core"])
