"""Offline evaluation of trained backbones (``ssl-eval``): weighted kNN and a linear probe.

Features are extracted once from a run directory, a checkpoint or an exported ``backbone.pt``
(or from raw pixels / a random initialisation, the baselines) and cached; kNN uses
``ssl_callbacks``' faiss search and voting, the probe trains on the cached tensor.

Example:
    >>> from ssl_train.evaluation import evaluate  # doctest: +SKIP
    >>> metrics = evaluate("outputs/2025-01-01/12-00-00")["metrics"]  # doctest: +SKIP
    >>> metrics.get("knn20_top1")  # doctest: +SKIP
"""

from ssl_train.evaluation.api import BACKBONE_KINDS, DEFAULT_DATA, EvalData, evaluate, load_data
from ssl_train.evaluation.features import extract_features, resolve_device
from ssl_train.evaluation.knn import knn_accuracy, knn_scores
from ssl_train.evaluation.probe import ProbeSettings, linear_probe
from ssl_train.evaluation.sources import (
    EvaluationError,
    Source,
    backbone_node,
    backbone_state_dict,
    build_backbone,
    load_backbone,
    resolve_source,
)

__all__ = [
    "BACKBONE_KINDS",
    "DEFAULT_DATA",
    "EvalData",
    "EvaluationError",
    "ProbeSettings",
    "Source",
    "backbone_node",
    "backbone_state_dict",
    "build_backbone",
    "evaluate",
    "extract_features",
    "knn_accuracy",
    "knn_scores",
    "linear_probe",
    "load_backbone",
    "load_data",
    "resolve_device",
    "resolve_source",
]
