"""``expokit eval``: PSNR/SSIM (and E_warp, flicker for video) of a checkpoint and of the
reference methods on an expokit dataset (:mod:`expokit.models.evaluate`).

Heavy libraries (torch, pandas, OpenCV) are imported inside the command so ``expokit --help``
stays fast. Expected failures print one line and exit 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from expokit.cli.common import (
    FiniteFloatRange,
    dataset_argument_with_data_alias,
    device_option,
    out_option,
    progress_option,
    reports_errors,
    selection_options,
)
from expokit.core.progress import show_progress


@click.command("eval")
@dataset_argument_with_data_alias(required=True)
@click.option(
    "--ckpt",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    metavar="CKPT_OR_RUN",
    help="Run folder (its best checkpoint, else newest step; RUN/checkpoints: newest step), "
    "step folder or model.safetensors. "
    "Without it (and --model) only the reference methods are scored.",
)
@click.option(
    "--model",
    "model_name",
    default=None,
    metavar="NAME",
    help="Without --ckpt: score the weights shipped with expokit for this model (uec, recnet, "
    "zerodce, video).",
)
@click.option(
    "--split",
    "splits",
    multiple=True,
    default=("test",),
    show_default=True,
    help="Split to score; repeat for several (one table each); all: every row.",
)
@out_option("Folder for pairs.csv, clips.csv and summary.json (an evaluation root).")
@click.option(
    "--reference",
    type=click.Choice(["same", "other-scene", "train-scene"]),
    default="same",
    show_default=True,
    help="Reference image: the pair's own target (exposure level; methods and models that "
    "use it peek), the next scene's target (SICE protocol) or a training-split scene's "
    "target (for a split of one scene).",
)
@click.option(
    "--train-split",
    default="train",
    show_default=True,
    metavar="NAME",
    help="Split whose mean target luminance the fair baseline 'gain to train mean' takes, "
    "whose pairs' exposure ratio the fair baseline 'exposure change by the train-split "
    "ratio' takes, and train-scene references come from; skipped when absent or scored.",
)
@click.option(
    "--save-images",
    "images_dir",
    type=click.Path(path_type=Path),
    default=None,
    metavar="DIR",
    help="Write input | output | target PNGs of every scored pair and DIR/index.html with "
    "the best and worst pairs (by model PSNR, else the best fair baseline's).",
)
@click.option(
    "--resize",
    type=click.IntRange(16, 16384),
    default=None,
    metavar="N",
    help="Resize every image to N x N (antialiased bilinear) first; SICE protocol: 256.",
)
@click.option(
    "--min-ev-error",
    type=FiniteFloatRange(min=0),
    default=None,
    metavar="EV",
    help="Score only pairs with |input_ev - target_ev| >= EV (SICE protocol: 2).",
)
@click.option("--no-references", is_flag=True, help="Score only the checkpoint's model.")
@device_option()
@selection_options
@progress_option()
@reports_errors
def eval_command(
    root: Path,
    ckpt: Path | None,
    model_name: str | None,
    splits: tuple[str, ...],
    out_dir: Path | None,
    reference: str,
    resize: int | None,
    train_split: str,
    images_dir: Path | None,
    min_ev_error: float | None,
    no_references: bool,
    device: str,
    exclude_flags: str | None,
    passed_only: bool,
    no_progress: bool,
) -> None:
    """Score a checkpoint and the reference methods on a split of DATASET (format v1).

    PSNR/SSIM on uint8 RGB inside the valid mask, for all pairs and separately for under-
    and over-exposed inputs; for video clips also E_warp and flicker. The peeks column
    says which rows see the target under the reference mode (the oracle always; gain and
    histogram to reference, and models that take a reference, under same). Each table
    ends with "model vs best fair baseline: +x.xx dB (baseline)": "clearly above" only when
    the scenes show it (a 95 % bound over per-scene paired differences above 0 dB), "NOT
    CLEARLY" when they do not, BELOW when the model is under it; splits under 20 pairs or
    of one scene get a warning. NaN or infinite weights
    or outputs are an error.
    """
    from typing import cast

    from expokit.curation.dataset.selection import PairSelection
    from expokit.models.checkpoint import pretrained_dir
    from expokit.models.evaluate import (
        EvalConfig,
        EvalError,
        ReferenceMode,
        evaluate,
        format_table,
    )

    try:  # every field is an option of this command: a bad one is a usage error (exit 2)
        config = EvalConfig(
            splits=tuple(splits),
            reference=cast(ReferenceMode, reference),
            resize=resize,
            min_ev_error=min_ev_error,
            references=not no_references,
            device=device,
            train_split=train_split,
            selection=PairSelection.parse(exclude_flags, passed_only),
        )
    except EvalError as exc:
        raise click.UsageError(str(exc)) from None
    if ckpt is None and model_name is not None:  # --ckpt wins over the shipped weights
        ckpt = pretrained_dir(model_name)
        click.echo(f"model {model_name}: the shipped weights {ckpt}", err=True)
    with show_progress(desc="eval", unit="pair", enabled=not no_progress) as bar:
        result = evaluate(root, ckpt, config, out=out_dir, progress=bar.update, images=images_dir)
    click.echo(format_table(result.summary))
    if out_dir is not None:
        click.echo(f"wrote {out_dir}/summary.json and per-pair CSV")
    if images_dir is not None:
        click.echo(f"wrote triptychs and {result.summary['images']}")
