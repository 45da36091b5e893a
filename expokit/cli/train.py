"""``expokit train``: train a baseline on an expokit dataset (also under torchrun)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import click

from expokit.cli.common import (
    FiniteFloatRange,
    dataset_argument_with_data_alias,
    device_option,
    given_on_command_line,
    loader_workers_option,
    out_option,
    progress_option,
    reports_errors,
    seed_option,
    selection_options,
)

AMP_CHOICES = ("off", "bf16", "fp16")


def _show_warning(message: Any, category: Any, *_args: Any, **_kwargs: Any) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


@click.command("train")
@dataset_argument_with_data_alias(required=False)
@click.option("--model", "model", default=None, help="Model name (uec, recnet, zerodce, video).")
@out_option("Run folder to write.", dest="out")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="TOML file of training keys (see docs/models.md); flags override it.",
)
@click.option("--split", default=None, help="Split to train on [recipe: train].")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Total steps.")
@click.option(
    "--max-minutes",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Stop cleanly (with a checkpoint) after this many minutes.",
)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
@click.option(
    "--val-every",
    type=click.IntRange(min=0),
    default=None,
    help="Validate (PSNR vs the fair baseline, best checkpoint) every N steps and at the "
    "end; 0: off [recipe: 100].",
)
@click.option("--amp", type=click.Choice(AMP_CHOICES), default=None, help="Mixed precision.")
@device_option()
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Pairs (crops) per step [recipe default].",
)
@click.option(
    "--lr",
    type=FiniteFloatRange(min=0, min_open=True),
    default=None,
    help="Learning rate [recipe default].",
)
@click.option(
    "--ema-decay",
    type=FiniteFloatRange(min=0, max=1, max_open=True),
    default=None,
    help="Validate and save a moving average of the weights with this decay per step "
    "(e.g. 0.99; 0: off) [recipe default].",
)
@seed_option(default=None, help="Random seed of weights, crops and order [recipe: 0].")
@click.option("--crop", type=click.IntRange(min=0), default=None, help="Crop size (0: none).")
@loader_workers_option()
@selection_options
@progress_option()
@click.pass_context
@reports_errors
def train(
    ctx: click.Context,
    root: Path | None,
    model: str | None,
    out: Path | None,
    config_file: Path | None,
    split: str | None,
    steps: int | None,
    max_minutes: float | None,
    resume: bool,
    val_every: int | None,
    amp: str | None,
    device: str | None,
    batch_size: int | None,
    lr: float | None,
    ema_decay: float | None,
    seed: int | None,
    crop: int | None,
    num_workers: int | None,
    exclude_flags: str | None,
    passed_only: bool,
    no_progress: bool,
) -> None:
    """Train a baseline on DATASET and write checkpoints to a run folder.

    DATASET may be left out when the --config file names it (key data). The model's
    default recipe (expokit.models.train.RECIPES) is the starting point; a --config TOML
    file and the flags override it. The resolved config is saved in
    RUN/config.json, the loss in RUN/log.csv and checkpoints in RUN/checkpoints/step_*.
    Every --val-every steps the model is scored on the val split against the best
    reference method that does not peek (log.csv val_* columns); the best step is kept in
    RUN/checkpoints/best (what eval and infer load from RUN), and the end says whether the
    model ever beat that baseline (RUN/validation.json). Run under
    `torchrun --nproc-per-node N -m expokit.cli train ...` for several processes (gloo on
    CPU, nccl on CUDA).
    """
    from expokit.models.train import resolve_config
    from expokit.models.train import train as run_training

    overrides: dict[str, Any] = {
        "data": None if root is None else str(root),
        "out": None if out is None else str(out),
        "split": split,
        "steps": steps,
        "max_minutes": max_minutes,
        "val_every": val_every,
        "amp": amp,
        # The option always has a value (auto); only a given one overrides --config.
        "device": device if given_on_command_line(ctx, "device") else None,
        "batch_size": batch_size,
        "lr": lr,
        "ema_decay": ema_decay,
        "seed": seed,
        "crop": crop,
        "num_workers": num_workers,
    }
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        config = resolve_config(model, config_file=config_file, overrides=overrides)
        if exclude_flags is not None or passed_only:
            chosen = {"exclude_flags": exclude_flags, "passed_only": passed_only}
            config = config.replace(data_options={**config.data_options, **chosen})
        summary = run_training(config, resume=resume, progress=not no_progress, echo=click.echo)
    if summary.rank == 0:
        for line in summary.report():
            click.echo(line)
