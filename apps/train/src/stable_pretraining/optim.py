"""Alias of :mod:`ssl_core.optim`.

Example: ``stable_pretraining.optim.LARS``, ``.lars.LARS``, ``.lr_scheduler``.
"""

from ssl_train._alias import lazy_alias

__getattr__, __dir__ = lazy_alias(
    __name__,
    ["ssl_core.optim"],
    submodules={
        "lars": ["ssl_core.optim.lars", "ssl_core.optim"],
        "lr_scheduler": ["ssl_core.optim.schedulers", "ssl_core.optim"],
    },
)
