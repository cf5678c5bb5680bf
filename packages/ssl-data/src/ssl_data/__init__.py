"""Dict datasets, multi-view sampling, fold_views and batched GPU/CPU augmentation for SSL."""

__version__ = "0.1.0"
