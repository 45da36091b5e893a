"""``expokit infer``: run a trained checkpoint, or the shipped weights of a model
(``--model NAME``), on images, folders and videos."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from expokit.cli.common import device_option, out_option, progress_option, reports_errors


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--ckpt",
    default=None,
    type=click.Path(path_type=Path),
    help="Checkpoint: a run folder (its best checkpoint, else its newest step; RUN/checkpoints:"
    " the newest step), a step folder or model.safetensors. Wins over --model.",
)
@click.option(
    "--model",
    "model_name",
    default=None,
    metavar="NAME",
    help="Without --ckpt: the weights shipped with expokit for this model (uec, recnet, "
    "zerodce, video; see its MODEL_CARD.md).",
)
@out_option("Output folder: <stem>.png per image, <stem>.mp4 per video.", required=True)
@click.option(
    "--ref",
    "reference",
    type=click.Path(path_type=Path),
    default=None,
    help="Reference image whose exposure the output takes (required by uec).",
)
@device_option()
@click.option(
    "--lut-size",
    type=click.IntRange(2, 127),
    default=33,
    show_default=True,
    help="uec: nodes per axis of the baked 3D LUT.",
)
@click.option("--no-lut", is_flag=True, help="uec: run the network on every pixel (slow).")
@click.option(
    "--tile",
    type=click.IntRange(min=16),
    default=None,
    help="Conv models: process overlapping tiles of this side (default: whole frames).",
)
@click.option(
    "--tile-overlap",
    type=click.IntRange(min=0),
    default=32,
    show_default=True,
    help="--tile: pixels each tile shares with its neighbours (blended).",
)
@click.option(
    "--crf", type=click.IntRange(0, 51), default=18, show_default=True, help="Video H.264 CRF."
)
@progress_option(plural=True)
@reports_errors
def infer(
    inputs: tuple[Path, ...],
    ckpt: Path | None,
    model_name: str | None,
    out_dir: Path,
    reference: Path | None,
    device: str,
    lut_size: int,
    no_lut: bool,
    tile: int | None,
    tile_overlap: int,
    crf: int,
    no_progress: bool,
) -> None:
    """Correct images, folders of images and videos with a trained model (--ckpt) or the
    weights shipped for a model (--model NAME).

    Images become OUT/<stem>.png (8-bit RGB, same size); videos OUT/<stem>.mp4 (H.264,
    audio kept). A bad file is reported and the others go on; the exit status is 1 when
    any input failed. OUT then holds this run's result only: outputs of an earlier infer
    into OUT that this one does not write again are removed (files infer never wrote are
    left alone and named). A checkpoint with NaN or infinite weights, or a model output with
    NaN or infinite values, is an error (never a written image).
    """
    from expokit.models.checkpoint import pretrained_dir
    from expokit.models.infer import (
        InferConfig,
        InferenceError,
        infer_folder,
        load_checked_model,
    )

    try:  # every field is an option of this command: a bad one is a usage error (exit 2)
        config = InferConfig(
            lut_size=lut_size,
            fast_uec=not no_lut,
            tile=tile,
            tile_overlap=tile_overlap,
            crf=crf,
            device=device,
        )
    except InferenceError as exc:
        raise click.UsageError(str(exc)) from None
    if ckpt is None and model_name is None:
        raise click.UsageError("give --ckpt CHECKPOINT, or --model NAME for the shipped weights")
    # --ckpt wins: the shipped weights are only the default when no checkpoint is named
    source = ckpt if ckpt is not None else pretrained_dir(str(model_name))
    options = {} if ckpt is not None else {"expect": model_name}
    # NaN/inf weights: refused, nothing written
    model, checkpoint = load_checked_model(source, **options)
    shipped = "the shipped weights " if ckpt is None else ""
    click.echo(
        f"model {checkpoint.model} (step {checkpoint.step}) from {shipped}{checkpoint.folder}",
        err=True,
    )
    run = infer_folder(
        model,
        inputs,
        out_dir,
        reference=reference,
        config=config,
        progress=not no_progress,
    )
    results = run.results
    failed = 0
    for result in results:
        if result.ok:
            extra = f" ({result.frames} frames)" if result.frames is not None else ""
            click.echo(f"{result.path} -> {result.output}{extra}")
            for note in result.notes:
                click.echo(f"  note: {note}")
        else:
            failed += 1
            click.secho(f"failed: {result.error}", fg="red", err=True)
    for name in run.removed:
        click.echo(f"removed {out_dir / name} (an earlier run's output)", err=True)
    for note in run.kept:
        click.echo(f"kept {out_dir}/{note}", err=True)
    if failed:
        click.secho(f"{failed} of {len(results)} inputs failed", fg="red", err=True)
        sys.exit(1)
