"""Assemble data, module, callbacks and trainer from a configuration, train, write the outputs."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from ssl_train import console
from ssl_train.assembly import (
    callback_nodes,
    check_required_callbacks,
    instantiate,
    loggers,
    missing_queue_error,
    progress_bar,
)
from ssl_train.config import (
    ConfigError,
    apply_schema,
    check_targets,
    resolve_resume,
    resume_config,
    trainer_kwargs_check,
)
from ssl_train.names import translate_config

# Test hook (crash-recovery tests): SIGKILL the process right after this optimiser step.
SIGKILL_ENV = "SSL_TRAIN_TEST_SIGKILL_AT_STEP"


@dataclass
class RunResult:
    """What a finished run reports.

    Attributes:
        run_dir: The run directory.
        metrics: The final value of every logged scalar (``val/probe_top1``, ``train/loss_epoch``).
        images_per_s: Mean training throughput in source images per second.
        wall_s: Wall time of the whole run, seconds.
        paths: Output files by name (``last_ckpt``, ``best_ckpt``, ``backbone``, ``metrics_csv``).
        history: Scalar metrics per epoch.
    """

    run_dir: Path
    metrics: dict[str, float]
    images_per_s: float
    wall_s: float
    paths: dict[str, Path | None] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def fill_embedding_dim(cfg: DictConfig) -> None:
    """Set ``embedding_dim`` from the backbone when it is ``auto``/``null`` (built on ``meta``).

    Configs refer to ``${embedding_dim}`` for the projector's and probes' input width, so it
    follows the backbone (``backbone=resnet18``) without editing anything else.
    """
    if cfg.get("backbone") is None or cfg.get("embedding_dim") not in (None, "auto"):
        return
    node = OmegaConf.to_container(cfg.backbone, resolve=True)
    assert isinstance(node, dict)
    check_targets(OmegaConf.create(node), "backbone")
    probe_node = dict(node)
    if "weights" in probe_node:
        probe_node["weights"] = None
    with torch.device("meta"):
        net = instantiate(probe_node, "backbone")
    dim = getattr(net, "out_features", None)
    if not isinstance(dim, int):
        raise ConfigError(
            f"backbone: {node.get('_target_')} has no integer out_features; set embedding_dim=<D> "
            "to the width of its output features."
        )
    cfg.embedding_dim = dim


def prepare(
    cfg: DictConfig, run_dir: str | Path | None = None, overrides: Sequence[str] = ()
) -> tuple[DictConfig, Path, Path | None]:
    """Resolve resume, apply the schema, fill ``embedding_dim``, resolve and check the config.

    Args:
        cfg: The composed configuration.
        run_dir: The run directory (``ssl-train`` passes Hydra's output directory).
        overrides: This call's command-line overrides (re-applied to a resumed run's config).

    Returns:
        ``(resolved config, run directory, checkpoint to resume from or None)``.

    Raises:
        ConfigError: Any configuration problem, with the key's path and the fix.
    """
    ckpt: Path | None = None
    if cfg.get("resume"):
        resumed_dir, ckpt = resolve_resume(str(cfg.resume))
        cfg = resume_config(cfg, resumed_dir, list(overrides))
        run_dir = resumed_dir
    cfg = apply_schema(cfg)
    translate_config(cfg)
    if run_dir is None:
        run_dir = cfg.run_dir or Path("outputs") / time.strftime("%Y-%m-%d/%H-%M-%S")
    run_dir = Path(run_dir).resolve()
    cfg.run_dir = str(run_dir)
    fill_embedding_dim(cfg)
    OmegaConf.resolve(cfg)
    for section in ("data", "module", "backbone"):
        if cfg.get(section) is not None:
            check_targets(cfg._get_node(section), section)
    for path, node in callback_nodes(cfg):
        check_targets(node, path)
    if cfg.get("module") is None or cfg.get("data") is None:
        raise ConfigError(
            "The config needs a 'module' and a 'data' section (ssl-train's default config has "
            "both; a custom --config-name must define them)."
        )
    trainer_cfg = cfg.get("trainer") or OmegaConf.create({})
    trainer_kwargs_check(trainer_cfg)
    return cfg, run_dir, ckpt


def build(cfg: DictConfig, run_dir: Path) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Build ``(datamodule, module, trainer, parts)`` from a prepared configuration."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from ssl_train import callbacks as app_callbacks
    from ssl_train.checkpoint_io import trainer_plugins
    from ssl_train.data import DataModule

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = instantiate(cfg.data, "data")
    module = instantiate(cfg.module, "module")
    user_callbacks = [instantiate(node, path) for path, node in callback_nodes(cfg)]
    check_required_callbacks(cfg, module, user_callbacks)

    ckpt_dir = run_dir / "checkpoints"
    history = app_callbacks.MetricsHistory()
    throughput = app_callbacks.ThroughputMonitor()
    own: list[Any] = [
        app_callbacks.RNGStateCallback(),
        throughput,
        history,
        app_callbacks.LastCheckpoint(ckpt_dir, cfg.checkpoint.every_n_steps),
    ]
    best = None
    trainer_cfg = OmegaConf.to_container(cfg.get("trainer") or {}, resolve=True)
    assert isinstance(trainer_cfg, dict)
    for key in ("_target_", "callbacks", "default_root_dir"):
        trainer_cfg.pop(key, None)
    logger_node = cfg.trainer.get("logger") if cfg.get("trainer") is not None else None
    trainer_cfg.pop("logger", None)
    want_best = trainer_cfg.pop("enable_checkpointing", True) is not False
    if cfg.checkpoint.monitor and want_best:
        best = ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="best-epoch{epoch}-step{step}",
            monitor=cfg.checkpoint.monitor,
            mode=cfg.checkpoint.mode,
            save_top_k=1,
            auto_insert_metric_name=False,
            save_on_train_epoch_end=False,
        )
        own.append(best)
    if os.environ.get(SIGKILL_ENV):
        own.append(app_callbacks.SigkillAtStep(int(os.environ[SIGKILL_ENV])))
    bar = progress_bar(str(cfg.progress_bar))
    if bar is not None:
        own.append(bar)
    trainer_cfg.setdefault("enable_progress_bar", bar is not None)
    if bar is None:
        trainer_cfg["enable_progress_bar"] = False
    if isinstance(datamodule, DataModule):
        trainer_cfg["use_distributed_sampler"] = False
    if trainer_cfg.get("deterministic"):
        torch.use_deterministic_algorithms(True, warn_only=True)

    plugins = trainer_plugins(trainer_cfg.pop("plugins", None), bool(cfg.resume_trusted))
    trainer = pl.Trainer(
        **trainer_cfg,
        default_root_dir=str(run_dir),
        callbacks=[*user_callbacks, *own],
        logger=loggers(cfg, run_dir, logger_node),
        enable_checkpointing=True,
        plugins=plugins,
    )
    parts = {
        "history": history,
        "throughput": throughput,
        "best": best,
        "ckpt_dir": ckpt_dir,
    }
    return datamodule, module, trainer, parts


def run(
    cfg: DictConfig,
    run_dir: str | Path | None = None,
    overrides: Sequence[str] = (),
    choices: Mapping[str, Any] | None = None,
) -> RunResult | None:
    """Train as ``ssl-train`` does and write the run directory.

    Args:
        cfg: A composed configuration (see :func:`ssl_train.compose`).
        run_dir: Where to write; default ``cfg.run_dir`` or ``outputs/<date>/<time>``. A resumed
            run continues in the run directory it resumes.
        overrides: This call's command-line overrides (only used when resuming).
        choices: The config-group choices (``{"method": "simclr", ...}``), saved for resume.

    Returns:
        The run's :class:`RunResult` on the rank-0 process, ``None`` on other ranks.

    Example:
        >>> from ssl_train import compose, run  # doctest: +SKIP
        >>> result = run(compose(["trainer.max_epochs=1"]), run_dir="runs/demo")
    """
    start = time.perf_counter()
    cfg, run_dir, ckpt = prepare(cfg, run_dir, overrides)
    rank_zero = _is_rank_zero()
    if rank_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        kept = [k for k in cfg.keys() if k not in ("resume", "resume_trusted")]
        saved = OmegaConf.masked_copy(cfg, kept)
        OmegaConf.save(saved, run_dir / "config.yaml")
        if choices and not (run_dir / "choices.yaml").exists():
            OmegaConf.save(OmegaConf.create(dict(choices)), run_dir / "choices.yaml")
    with console.quiet():
        datamodule, module, trainer, parts = build(cfg, run_dir)
        # weights_only=True unless resume_trusted: the checkpoint plugin refuses all but plain data
        fit_kwargs = {
            "ckpt_path": str(ckpt) if ckpt else None,
            "weights_only": not cfg.resume_trusted,
        }
        try:
            trainer.fit(module, datamodule=datamodule, **fit_kwargs)
        except LookupError as err:
            config_error = missing_queue_error(cfg, err)
            if config_error is None:
                raise
            raise config_error from None
    if not trainer.is_global_zero:
        return None

    from ssl_train import outputs

    metrics = outputs.final_metrics(trainer.callback_metrics)
    outputs.merge_csv_versions(run_dir / "csv", run_dir / "metrics.csv")
    paths: dict[str, Path | None] = {
        "run_dir": run_dir,
        "config": run_dir / "config.yaml",
        "metrics_csv": run_dir / "metrics.csv",
        "last_ckpt": parts["ckpt_dir"] / "last.ckpt",
        "best_ckpt": Path(parts["best"].best_model_path)
        if parts["best"] is not None and parts["best"].best_model_path
        else None,
    }
    load_line = None
    if cfg.export_backbone:
        exported = outputs.export_backbone(
            module,
            OmegaConf.to_container(cfg.backbone)
            if cfg.get("backbone") is not None
            else OmegaConf.to_container(cfg.module).get("backbone"),
            run_dir,  # type: ignore[union-attr]
        )
        if exported is not None:
            paths["backbone"], load_line = exported
    history = parts["history"].epochs
    if cfg.plots and history:
        for png in outputs.write_plots(history, run_dir / "plots"):
            paths[f"plot_{png.stem}"] = png
    wall = time.perf_counter() - start
    images_per_s = parts["throughput"].images_per_s
    result = RunResult(run_dir, metrics, images_per_s, wall, paths, history)
    outputs.write_summary(
        run_dir / "summary.json",
        {
            "metrics": metrics,
            "images_per_s": images_per_s,
            "wall_s": wall,
            "paths": paths,
            "history": history,
            "load_backbone": load_line,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "data": datamodule.report() if hasattr(datamodule, "report") else {},
        },
    )
    if cfg.summary:
        outputs.print_summary(
            outputs.summary_rows(metrics, images_per_s, wall, paths), f"ssl-train: {run_dir.name}"
        )
        if load_line:
            print(f"Load the backbone:\n  {load_line}")
    return result
