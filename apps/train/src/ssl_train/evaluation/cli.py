"""Command line: ``ssl-eval [SOURCE] [key=value ...]``; prints a rich table, writes JSON.

Examples:
    ssl-eval outputs/2025-01-01/12-00-00                      # the run's dataset
    ssl-eval outputs/.../checkpoints/last.ckpt data=fashion_mnist
    ssl-eval path/backbone.pt config=path/config.yaml
    ssl-eval someone/backbone.pt arch=small_resnet            # reads no config.yaml
    ssl-eval backbone=pixels data=fashion_mnist               # raw-pixel baseline
    ssl-eval outputs/... backbone=random                      # the run's architecture, random init
    ssl-eval backbone=random arch=resnet18 data=cifar10 data.root=~/data
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["USAGE", "main", "parse_args", "print_table"]

USAGE = """\
usage: ssl-eval [SOURCE] [key=value ...] [--trust-checkpoint]

SOURCE (or source=PATH): a run directory written by ssl-train, a .ckpt, or a backbone.pt.
Weights are loaded with torch.load(weights_only=True): a file holding other objects is refused.
A run's config.yaml is code (its _target_ entries are called): for files from others, give arch=.

  --trust-checkpoint   load the weights with full unpickling (can run code in the file; only
                       for files whose origin you trust)

keys:
  backbone=trained|pixels|random  what to evaluate (default: trained; pixels and random are
                                  baselines; random copies the run's architecture, or arch=)
  arch=NAME            architecture of the weights (no config.yaml is read) or of
                       backbone=random without a run: small_resnet | small_resnet_wide |
                       small_resnet_wide_2x2 | resnet18 | torchvision
  config=PATH          the run's config.yaml, for a backbone.pt / .ckpt outside its run dir
  data=NAME            fashion_mnist_embedded | fashion_mnist | cifar10 | cifar100 | stl10 |
                       imagefolder (default: the run's dataset, else fashion_mnist_embedded)
  data.KEY=VALUE       data overrides, e.g. data.root=/path data.download=true
  backbone.KEY=VALUE   architecture overrides with arch=, e.g. backbone.model_name=resnet50
  k=10,20,200          kNN neighbour counts          temperature=0.07   kNN temperature
  linear=true          train the linear probe        probe.epochs=30 probe.lr=0.003
  probe.min_steps=1000 probe.batch_size=256 probe.weight_decay=0.0001 probe.label_smoothing=0
  batch_size=512       feature-extraction batch      device=auto (cuda if available) | cpu
  train_limit=N test_limit=N   use the first N images      seed=0
  output=PATH          JSON file (default: <run dir>/eval-<backbone>-<data>.json, or
                       ./eval-<backbone>-<data>.json without a run)
  progress=true        progress bars
"""
"""The text of ``ssl-eval --help``."""

_SCALARS = {
    "source": str,
    "backbone": str,
    "arch": str,
    "config": str,
    "data": str,
    "temperature": float,
    "linear": "bool",
    "batch_size": int,
    "device": str,
    "train_limit": int,
    "test_limit": int,
    "seed": int,
    "output": str,
    "progress": "bool",
}
_PROBE = {
    "epochs": int,
    "min_steps": int,
    "lr": float,
    "batch_size": int,
    "weight_decay": float,
    "label_smoothing": float,
}


def _bool(key: str, value: str) -> bool:
    low = value.lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{key}={value!r}: use true or false.")


def _convert(key: str, value: str, kind: Any) -> Any:
    if kind == "bool":
        return _bool(key, value)
    if value.lower() in ("null", "none") and key in ("train_limit", "test_limit"):
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{key}={value!r}: expected a {kind.__name__}.") from None


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """Turn ``[SOURCE] key=value ...`` into keyword arguments of :func:`ssl_train.evaluate`.

    Raises:
        ValueError: Unknown key (with the closest valid one) or a value of the wrong type.

    Example:
        >>> parse_args(["runs/a", "k=10,20", "probe.epochs=5"])["ks"]
        [10, 20]
    """
    kwargs: dict[str, Any] = {}
    probe: dict[str, Any] = {}
    overrides: list[str] = []
    for arg in argv:
        if arg == "--trust-checkpoint":
            kwargs["trust_checkpoint"] = True
            continue
        if "=" not in arg:
            if "source" in kwargs:
                raise ValueError(
                    f"two sources given ({kwargs['source']!r} and {arg!r}); evaluate one at a "
                    "time, or write key=value for options."
                )
            kwargs["source"] = arg
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+")
        if key in ("k", "ks"):
            try:
                kwargs["ks"] = [int(v) for v in value.strip("[]").split(",") if v.strip()]
            except ValueError:
                raise ValueError(
                    f"k={value!r}: use a comma list of integers, e.g. k=10,20,200."
                ) from None
        elif key in _SCALARS:
            kwargs[key] = _convert(key, value, _SCALARS[key])
        elif key.startswith("probe."):
            name = key.split(".", 1)[1]
            if name not in _PROBE:
                raise ValueError(
                    f"unknown probe setting {key!r}; valid: probe.{', probe.'.join(_PROBE)}."
                )
            probe[name] = _convert(key, value, _PROBE[name])
        elif key.startswith(("data.", "backbone.")):
            overrides.append(f"{key}={value}")
        else:
            valid = [*_SCALARS, "k", "probe.<setting>", "data.<key>", "backbone.<key>"]
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown option {key!r}.{hint} Valid: {', '.join(valid)}.")
    if probe:
        from ssl_train.evaluation.probe import ProbeSettings

        kwargs["probe"] = ProbeSettings(**probe)
    if overrides:
        kwargs["overrides"] = overrides
    return kwargs


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def print_table(result: Mapping[str, Any]) -> None:
    """Print an evaluation result (the dict of :func:`ssl_train.evaluate`) as a rich table."""
    from rich.console import Console
    from rich.table import Table

    what = result.get("source") or result.get("arch_group") or ""
    title = f"ssl-eval: {result['backbone']} {what} on {result['data']}".replace("  ", " ")
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("classifier")
    table.add_column("top-1 %", justify="right")
    table.add_column("top-5 %", justify="right")
    for k, acc in result["knn"].items():
        table.add_row(
            f"kNN k={k} (T={result['knn_temperature']})", _pct(acc["top1"]), _pct(acc["top5"])
        )
    if result.get("linear"):
        epochs = int(result["linear"]["epochs"])
        table.add_row(
            f"linear probe ({epochs} epochs)",
            _pct(result["linear"]["top1"]),
            _pct(result["linear"]["top5"]),
        )
    seconds = result["seconds"]
    table.caption = (
        f"train {result['n_train']} / test {result['n_test']} images, {result['feature_dim']}-d "
        f"features, {result['device']}; features {seconds['features']:.1f} s, kNN "
        f"{seconds['knn']:.1f} s, probe {seconds['linear']:.1f} s"
    )
    Console().print(table)


def default_output(kwargs: Mapping[str, Any], result: Mapping[str, Any]) -> Path:
    """``<run dir>/eval-<backbone>-<data>.json``, or in the current directory without a run."""
    name = f"eval-{result['backbone']}-{result['data']}.json"
    run_dir = result.get("run_dir")
    return Path(run_dir) / name if run_dir else Path(name)


def main(argv: list[str] | None = None) -> None:
    """Run ``ssl-eval`` (``argv`` replaces ``sys.argv[1:]`` when given)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return
    from ssl_data import DatasetUnavailableError
    from ssl_train.evaluation.api import evaluate
    from ssl_train.evaluation.sources import EvaluationError

    try:
        kwargs = parse_args(args)
        output = kwargs.pop("output", None)
        result = evaluate(**kwargs)
    except DatasetUnavailableError as err:
        raise SystemExit(
            f"ssl-eval: {err}\n(ssl-eval takes data.download=true and "
            "data.root=PATH like ssl-train.)"
        ) from None
    except (EvaluationError, ValueError) as err:
        raise SystemExit(f"ssl-eval: {err}\n(ssl-eval --help lists the options.)") from None
    path = Path(output) if output else default_output(kwargs, result)
    path.parent.mkdir(parents=True, exist_ok=True)
    import json

    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print_table(result)
    print(f"Wrote {path}")


if __name__ == "__main__":
    main()
