"""The app's data: :class:`ssl_data.DataModule`, kept under this name for configs that use it.

The DataModule is library code in ``ssl_data``; ``ssl_train.data.DataModule`` is the same class.
"""

from ssl_data.datamodule import DataModule

__all__ = ["DataModule"]
