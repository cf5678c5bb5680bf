"""Command-line entry point: ``ssl-train [overrides...]`` (Hydra, ``version_base="1.3"``).

Examples:
    ssl-train                                   # SimCLR, embedded Fashion-MNIST, small ResNet
    ssl-train method=byol trainer.max_epochs=20
    ssl-train -m method=simclr,vicreg           # Hydra multirun sweep
    ssl-train --config-name examples/simclr_spt # a stable-pretraining style config
    ssl-train resume=outputs/2025-01-01/12-00-00
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig


def download_hint(cfg: DictConfig, hydra_cfg: DictConfig) -> str:
    """The exact command that retries this run with downloads allowed."""
    overrides = [
        o for o in hydra_cfg.overrides.task if not o.lstrip("+").startswith("data.download=")
    ]
    if not str(hydra_cfg.job.config_name).startswith("config"):
        overrides = ["--config-name", str(hydra_cfg.job.config_name), *overrides]
    root = (cfg.get("data") or {}).get("root")
    where = f" (into {root})" if root else ""
    return (
        f"To download it{where}, run:\n  ssl-train {' '.join([*overrides, 'data.download=true'])}"
    )


def _task(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from ssl_train.config import ConfigError
    from ssl_train.console import route_lightning_logs_to_root
    from ssl_train.runner import run

    route_lightning_logs_to_root()
    hydra_cfg = HydraConfig.get()
    choices = {k: v for k, v in hydra_cfg.runtime.choices.items() if not k.startswith("hydra")}
    try:
        result = run(
            cfg,
            run_dir=cfg.get("run_dir") or hydra_cfg.runtime.output_dir,
            overrides=list(hydra_cfg.overrides.task),
            choices=choices,
        )
    except ConfigError as err:
        raise SystemExit(f"ssl-train: configuration error: {err}") from None
    except Exception as err:
        from ssl_data import DatasetUnavailableError

        if isinstance(err, DatasetUnavailableError):
            raise SystemExit(f"ssl-train: {err}\n{download_hint(cfg, hydra_cfg)}") from None
        raise
    _release_process_group()
    if result is None:
        return None
    # The returned value is what Hydra sweepers optimise: the probe accuracy when there is one.
    for key in ("val/probe_top1", "val/knn_top1"):
        if key in result.metrics:
            return result.metrics[key]
    return None


def _release_process_group() -> None:
    """Destroy the process group a DDP run left behind (Lightning does not).

    A live gloo group's threads race interpreter exit and abort the process now and then
    ("terminate called without an active exception", exit code -6) after a finished run.
    Destroying it also lets a Hydra multirun job start the next run with a fresh group.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


_hydra_main = hydra.main(config_path="conf", config_name="config", version_base="1.3")(_task)


def _take_option(args: list[str], names: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """Remove ``--name value`` / ``--name=value`` from ``args``; return the value and the rest."""
    rest, value, i = [], None, 0
    while i < len(args):
        head, eq, tail = args[i].partition("=")
        if head in names:
            if eq:
                value = tail
            elif i + 1 < len(args):
                value, i = args[i + 1], i + 1
        else:
            rest.append(args[i])
        i += 1
    return value, rest


def _module_only_main(user: DictConfig) -> Any:
    """A Hydra main on the app's default config with a module-only config merged on top."""

    def task(cfg: DictConfig) -> float | None:
        from ssl_train.config import merge_module_only

        return _task(merge_module_only(cfg, user))

    return hydra.main(config_path="conf", config_name="config", version_base="1.3")(task)


def main(argv: list[str] | None = None) -> None:
    """Run the training app (``ssl-train``); ``argv`` replaces ``sys.argv[1:]`` when given.

    A ``--config-dir D --config-name N`` config holding only ``module`` (and ``callbacks``), as
    in the docs, runs on the app's default data/trainer/callbacks with plain overrides.
    """
    from ssl_train.config import app_overrides, module_only_config

    args = sys.argv[1:] if argv is None else list(argv)
    config_dir, rest = _take_option(args, ("--config-dir", "-cd"))
    config_name, rest = _take_option(rest, ("--config-name", "-cn"))
    user = module_only_config(config_dir, config_name) if config_name else None
    if user is not None:
        sys.argv = [sys.argv[0], *app_overrides(rest)]
        _module_only_main(user)()
        return
    sys.argv = [sys.argv[0], *app_overrides(args)]
    _hydra_main()


if __name__ == "__main__":
    main()
