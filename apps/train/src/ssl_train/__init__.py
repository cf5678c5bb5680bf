"""The ssl-train Hydra app."""

__version__ = "0.1.0"
