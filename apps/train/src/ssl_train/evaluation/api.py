"""``evaluate``: kNN and linear-probe accuracy of a backbone's frozen features on a dataset."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ssl_train.evaluation.features import extract_features, resolve_device
from ssl_train.evaluation.knn import knn_accuracy
from ssl_train.evaluation.probe import ProbeSettings, linear_probe
from ssl_train.evaluation.sources import (
    EvaluationError,
    backbone_node,
    build_backbone,
    load_backbone,
    resolve_source,
)

__all__ = ["BACKBONE_KINDS", "DEFAULT_DATA", "EvalData", "evaluate", "load_data"]

BACKBONE_KINDS = ("trained", "pixels", "random")
"""What ``evaluate(backbone=...)`` accepts: the trained weights, raw pixels, a random init."""
DEFAULT_DATA = "fashion_mnist_embedded"
"""The dataset used when neither ``data=`` nor a run configuration names one."""


@dataclass(frozen=True)
class EvalData:
    """A labelled train/test pair with what the evaluation transform needs.

    Attributes:
        name: The ``data`` config group (``fashion_mnist``, ``cifar10``, ...).
        train: The training split (the kNN bank and the probe's training set).
        test: The test split (the app's ``val`` split).
        num_classes: Number of classes.
        image_size: Side length the images are resized to.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation std.
    """

    name: str
    train: Any
    test: Any
    num_classes: int
    image_size: int
    mean: list[float]
    std: list[float]


def _groups(group: str) -> list[str]:
    from importlib.resources import files

    folder = files("ssl_train.conf").joinpath(group)
    return sorted(
        p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml") and p.name[0] != "_"
    )


def _compose(choices: dict[str, str], overrides: Sequence[str]) -> DictConfig:
    from ssl_train.config import compose

    for group, name in choices.items():
        valid = _groups(group)
        if name not in valid:
            raise EvaluationError(
                f"{group}={name!r} is not a {group} config; choose one of {', '.join(valid)}."
            )
    try:
        return compose([f"{g}={n}" for g, n in choices.items()] + list(overrides))
    except Exception as err:  # Hydra's override/config errors
        raise EvaluationError(f"cannot apply overrides {list(overrides)}: {err}") from None


def _dataset(node: Any) -> Any:
    from hydra.utils import get_method

    kwargs = OmegaConf.to_container(node, resolve=True)
    assert isinstance(kwargs, dict)
    # Called directly (not hydra.utils.instantiate) so that ssl_data's DatasetUnavailableError,
    # whose message names the fix, reaches the caller unwrapped.
    return get_method(str(kwargs.pop("_target_")))(**kwargs)


def load_data(
    data: str | None = None,
    overrides: Sequence[str] = (),
    run_config: DictConfig | None = None,
) -> EvalData:
    """Load the train and test splits of a ``data`` config group of ssl-train.

    Args:
        data: The group (``fashion_mnist_embedded``, ``fashion_mnist``, ``cifar10``, ...);
            default: the run's dataset when ``run_config`` names one, else
            :data:`DEFAULT_DATA`.
        overrides: ``data.*`` overrides (``data.root=/path``, ``data.download=true``).
        run_config: The run's configuration, for its dataset and data root.

    Returns:
        The :class:`EvalData`.

    Raises:
        EvaluationError: Unknown group or bad override.
        ssl_data.DatasetUnavailableError: The dataset is not on disk (the message names the fix).
    """
    extra = [o for o in overrides if o.startswith("data.")]
    if data is None and run_config is not None and run_config.get("data") is not None:
        run_data = run_config.data
        if run_data.get("name") in _groups("data"):
            data = str(run_data.name)
            root = run_data.get("root")
            if root is not None and not any(o.startswith("data.root=") for o in extra):
                extra.insert(0, f"data.root={root}")
    data = data or DEFAULT_DATA
    cfg = _compose({"data": data}, extra)
    node = cfg.data
    return EvalData(
        name=data,
        train=_dataset(node.train.dataset),
        test=_dataset(node.val.dataset),
        num_classes=int(node.num_classes),
        image_size=int(node.image_size),
        mean=[float(m) for m in node.mean],
        std=[float(s) for s in node.std],
    )


def _arch_node(arch: str, data: str, overrides: Sequence[str]) -> dict[str, Any]:
    extra = [o for o in overrides if o.startswith(("backbone.", "data."))]
    cfg = _compose({"data": data, "backbone": arch}, extra)
    return backbone_node(cfg)


def _random_backbone(node: dict[str, Any], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_backbone(node)


def _model(
    source: str | Path | None,
    backbone: str,
    arch: str | None,
    config: str | Path | None,
    data: str | None,
    overrides: Sequence[str],
    seed: int,
    trusted: bool = False,
) -> tuple[nn.Module | None, dict[str, Any], DictConfig | None]:
    """Return ``(model or None for pixels, description, run config)``."""
    if backbone not in BACKBONE_KINDS:
        raise EvaluationError(
            f"backbone={backbone!r}: use one of {', '.join(BACKBONE_KINDS)} (random takes the "
            "run's architecture, or arch=<backbone group> without a run)."
        )
    info: dict[str, Any] = {"backbone": backbone, "source": None if source is None else str(source)}
    if backbone == "pixels":
        return None, info, None
    if backbone == "trained":
        if source is None:
            raise EvaluationError(
                "nothing to evaluate: pass a run directory, a .ckpt or a backbone.pt "
                "(ssl-eval outputs/<date>/<time>), or a baseline: backbone=pixels, or "
                "backbone=random arch=small_resnet."
            )
        if arch is not None:  # the architecture by name: no config.yaml of the source is read
            node = _arch_node(arch, data or DEFAULT_DATA, overrides)
            net, src = load_backbone(source, config, arch=node, trusted=trusted)
            info.update(weights=str(src.path), run_dir=str(src.run_dir), arch=node, arch_group=arch)
            return net, info, None
        net, src = load_backbone(source, config, trusted=trusted)
        info.update(weights=str(src.path), run_dir=str(src.run_dir), arch=backbone_node(src.config))
        return net, info, src.config
    # random initialisation
    if arch is not None:
        node = _arch_node(arch, data or DEFAULT_DATA, overrides)
        info.update(arch=node, arch_group=arch)
        return _random_backbone(node, seed), info, None
    if source is None:
        raise EvaluationError(
            "backbone=random needs an architecture: a run to copy it from (a run directory, "
            f".ckpt or backbone.pt) or arch=<{'|'.join(_groups('backbone'))}>."
        )
    src = resolve_source(source, config)
    assert src.config is not None
    node = backbone_node(src.config)
    info.update(run_dir=str(src.run_dir), arch=node)
    return _random_backbone(node, seed), info, src.config


def evaluate(
    source: str | Path | None = None,
    *,
    backbone: str = "trained",
    arch: str | None = None,
    config: str | Path | None = None,
    data: str | None = None,
    overrides: Sequence[str] = (),
    ks: Sequence[int] = (10, 20, 200),
    temperature: float = 0.07,
    linear: bool = True,
    probe: ProbeSettings | None = None,
    batch_size: int = 512,
    device: str = "auto",
    train_limit: int | None = None,
    test_limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
    output: str | Path | None = None,
    trust_checkpoint: bool = False,
) -> dict[str, Any]:
    """Evaluate a backbone's frozen features: weighted kNN and a linear probe, test top-1/top-5.

    Features of the train and test split are extracted once (``torch.inference_mode``, the
    evaluation transform with the dataset's mean/std) and cached in memory; the kNN bank is the
    training features (exact cosine search with faiss, ``exp(sim / T)`` votes), and the linear
    probe is trained on the standardised training features.

    Args:
        source: A run directory, a Lightning ``.ckpt`` or an exported ``backbone.pt``.
        backbone: ``"trained"`` (the weights of ``source``), ``"pixels"`` (flattened normalised
            images, no model) or ``"random"`` (a seeded random initialisation of the run's
            architecture, or of ``arch``).
        arch: A ``backbone`` config group (``small_resnet``, ``resnet18``, ``torchvision``): the
            architecture of the trained weights (then no ``config.yaml`` of the source is read),
            or of ``backbone="random"`` without a run; ``backbone.*`` overrides apply to it.
        config: The run's ``config.yaml`` when ``source`` is a file outside its run directory.
        data: A ``data`` config group; default: the run's dataset, else
            :data:`DEFAULT_DATA` (the embedded Fashion-MNIST subset).
        overrides: ``data.*`` and ``backbone.*`` overrides (``data.root=/path``).
        ks: kNN neighbour counts.
        temperature: kNN temperature T.
        linear: Train and score the linear probe.
        probe: Linear-probe settings (default :class:`ProbeSettings`).
        batch_size: Images per forward pass during feature extraction.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:0"``...
        train_limit: Use only the first N training images.
        test_limit: Use only the first N test images.
        seed: Seed of the random initialisation and of the probe.
        progress: Show progress bars.
        output: Also write the result as JSON to this path.
        trust_checkpoint: Load the weights file with full unpickling (``weights_only=False``,
            which can run code in the file); by default anything but plain data is refused.

    Returns:
        A JSON-ready dict: ``metrics`` (flat: ``knn20_top1``, ``linear_top1``, ... as fractions
        in ``[0, 1]``), ``knn`` (per k), ``linear``, sizes, settings and ``seconds``.

    Raises:
        EvaluationError: Bad source, backbone kind, config group or override, or a weights
            file that holds objects other than plain data (unless ``trust_checkpoint``).
        ssl_data.DatasetUnavailableError: The dataset is missing (its message names the fix).

    Example:
        >>> from ssl_train import evaluate  # doctest: +SKIP
        >>> metrics = evaluate(backbone="pixels", train_limit=1000)["metrics"]  # doctest: +SKIP
        >>> metrics.get("knn20_top1")  # doctest: +SKIP
    """
    start = time.perf_counter()
    ks = sorted({int(k) for k in ks})
    model, info, run_config = _model(
        source, backbone, arch, config, data, overrides, seed, trust_checkpoint
    )
    dataset = load_data(data, overrides, run_config)
    dev = resolve_device(device)
    common = dict(
        image_size=dataset.image_size,
        mean=dataset.mean,
        std=dataset.std,
        batch_size=batch_size,
        device=dev,
        progress=progress,
    )
    t0 = time.perf_counter()
    train_x, train_y = extract_features(
        model, dataset.train, limit=train_limit, description="train features", **common
    )
    test_x, test_y = extract_features(
        model, dataset.test, limit=test_limit, description="test features", **common
    )
    t1 = time.perf_counter()
    knn = knn_accuracy(train_x, train_y, test_x, test_y, dataset.num_classes, ks, temperature)
    t2 = time.perf_counter()
    settings = probe or ProbeSettings()
    lin = (
        linear_probe(
            train_x, train_y, test_x, test_y, dataset.num_classes, settings, seed=seed, device=dev
        )
        if linear
        else None
    )
    t3 = time.perf_counter()
    metrics: dict[str, float] = {}
    for k, acc in knn.items():
        metrics.update({f"knn{k}_{name}": value for name, value in acc.items()})
    if lin is not None:
        metrics.update({f"linear_{k}": v for k, v in lin.items() if k != "epochs"})
    result = {
        **info,
        "data": dataset.name,
        "n_train": int(train_x.shape[0]),
        "n_test": int(test_x.shape[0]),
        "feature_dim": int(train_x.shape[1]),
        "num_classes": dataset.num_classes,
        "metrics": metrics,
        "knn": {str(k): v for k, v in knn.items()},
        "knn_temperature": temperature,
        "linear": lin,
        "probe": asdict(settings) if linear else None,
        "seed": seed,
        "device": str(dev),
        "torch_threads": torch.get_num_threads(),
        "seconds": {
            "features": t1 - t0,
            "knn": t2 - t1,
            "linear": t3 - t2,
            "total": time.perf_counter() - start,
        },
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if output is not None:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        result["output"] = str(path)
    return result
