"""Exceptions raised by ssl_data."""

__all__ = ["DatasetUnavailableError"]


class DatasetUnavailableError(RuntimeError):
    """A dataset is not on disk and cannot be downloaded.

    The message always names the command or option that fixes it (for example
    ``apt-get install dataset-fashion-mnist``, ``download=True`` or ``data.root=/path``).
    """
