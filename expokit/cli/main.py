"""The ``expokit`` command-line program: a thin click front over the stage packages.

Each stage is a subcommand group; heavy imports happen inside commands so ``expokit --help``
stays fast. Expected failures (:class:`~expokit.core.errors.ExpokitError`) print one line
and exit with status 1; batch commands exit 1 when any item failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from expokit import __version__
from expokit.cli.align import align
from expokit.cli.calibrate import calibrate
from expokit.cli.capture import capture
from expokit.cli.common import (
    FINITE_FLOAT,
    jobs_option,
    out_option,
    progress_option,
    reports_errors,
)
from expokit.cli.curate_build import register as register_build
from expokit.cli.curate_tools import register as register_tools
from expokit.cli.eval import eval_command
from expokit.cli.infer import infer
from expokit.cli.simulate import simulate_command
from expokit.cli.train import train
from expokit.core.parallel import EXECUTORS
from expokit.curation.rendering.config import LAYOUTS, WB_POLICIES, OutputFormat


# show_default: every option's help ends with its default (options whose default is None
# say in their help what stands instead).
@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="expokit")
def cli() -> None:
    """Build paired exposure-correction datasets from two-camera rigs and RAW files."""


@cli.command()
@reports_errors
def info() -> None:
    """Print versions of Python, numpy, rawpy/LibRaw, OpenCV, gphoto2, torch and ffmpeg."""
    from expokit.cli.info import collect_versions

    for label, version, note in collect_versions():
        if version is None:
            click.echo(f"{label:15s} " + click.style("missing", fg="yellow") + f"  ({note})")
        else:
            click.echo(f"{label:15s} {version}" + (f"  {note}" if note else ""))


# --------------------------------------------------------------------------- render

_FORMAT_CHOICES = [f.value for f in OutputFormat]


def _render_options(func: Any) -> Any:
    options: list[Callable[[Any], Any]] = [
        click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path)),
        out_option("Output folder (created if missing).", required=True),
        click.option(
            "--ev",
            "evs",
            default="-1.5,-1,0,1,1.5",
            show_default=True,
            help="EV ladder, comma-separated (also N1.5,0,P1 tokens).",
        ),
        click.option(
            "--format",
            "-f",
            "formats",
            multiple=True,
            type=click.Choice(_FORMAT_CHOICES),
            default=("jpg",),
            show_default=True,
            help="Output format; repeat for several. 8-bit formats are sRGB.",
        ),
        click.option(
            "--layout",
            type=click.Choice(LAYOUTS),
            default="sequence",
            show_default=True,
            help="sequence: <name>/<name>_<EV>; msec: INPUT_IMAGES/ + GT_IMAGES/.",
        ),
        click.option(
            "--gt-ev",
            type=FINITE_FLOAT,
            default=0.0,
            show_default=True,
            help="EV written to GT_IMAGES in the msec layout.",
        ),
        click.option(
            "--wb",
            "white_balance",
            type=click.Choice(WB_POLICIES),
            default="camera",
            show_default=True,
            help="White balance; camera falls back to daylight, then unity.",
        ),
        click.option(
            "--meter",
            default=None,
            metavar="STAT:TARGET",
            help="Normalise EV 0 so STAT (median|mean) luminance hits TARGET, "
            "e.g. median:0.18. Default: exposure as shot.",
        ),
        click.option(
            "--jpeg-quality",
            type=click.IntRange(1, 100),
            default=95,
            show_default=True,
            help="JPEG quality of jpg outputs (1-100).",
        ),
        click.option(
            "--png-compression",
            type=click.IntRange(0, 9),
            default=1,
            show_default=True,
            help="zlib level of png outputs (0: none, 9: smallest, slowest).",
        ),
        click.option(
            "--demosaic",
            default="AHD",
            show_default=True,
            help="LibRaw demosaic algorithm (rawpy.DemosaicAlgorithm name).",
        ),
        click.option(
            "--no-sanity-checks",
            is_flag=True,
            help="Do not reject blank/noise/white renders (not recommended).",
        ),
        jobs_option(help="Parallel worker processes (spawn) or Ray CPUs."),
        click.option(
            "--executor",
            type=click.Choice(EXECUTORS),
            default="local",
            show_default=True,
            help="ray: run per-file tasks on Ray (extra [ray]).",
        ),
        progress_option(),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_render(
    inputs: Sequence[Path],
    out_dir: Path,
    evs: str,
    formats: Sequence[str],
    layout: str,
    gt_ev: float,
    white_balance: str,
    meter: str | None,
    jpeg_quality: int,
    png_compression: int,
    demosaic: str,
    no_sanity_checks: bool,
    workers: int,
    executor: str,
    no_progress: bool,
) -> None:
    from expokit.core.ev import parse_ev_list
    from expokit.curation.rendering.config import MeterSpec, RenderConfig
    from expokit.curation.rendering.render import render_batch

    try:
        config = RenderConfig(
            evs=parse_ev_list(evs),
            formats=tuple(OutputFormat(f) for f in formats),
            layout=layout,
            gt_ev=gt_ev,
            white_balance=white_balance,
            meter=MeterSpec.parse(meter) if meter else None,
            jpeg_quality=jpeg_quality,
            png_compression=png_compression,
            demosaic=demosaic,
            sanity_checks=not no_sanity_checks,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    summary = render_batch(
        inputs,
        out_dir,
        config,
        workers=workers,
        executor=executor,
        progress=not no_progress,
    )
    for text, problem in summary.report():
        click.secho(text, fg="red" if problem else None, err=problem)
    if not summary.ok:
        sys.exit(1)


@cli.command()
@_render_options
@reports_errors
def render(**kwargs: Any) -> None:
    """Render RAW files (or folders of them) to multi-EV image sets with a manifest.

    Each RAW is demosaicked once to linear 16-bit RGB (LibRaw, auto-brightening off); every
    EV is an exact scale of those values, clipped and sRGB-encoded. Re-running into the same
    folder skips finished RAWs and resumes killed runs.
    """
    _run_render(**kwargs)


@cli.group()
def curate() -> None:
    """Curation: multi-EV renders from RAW, paired datasets, QA, exports."""


@curate.command("render")
@_render_options
@reports_errors
def curate_render(**kwargs: Any) -> None:
    """Same as `expokit render`."""
    _run_render(**kwargs)


@cli.command()
@out_option("Where the demo writes its outputs (a new or empty folder).", default=Path("demo_out"))
@jobs_option()
@progress_option(plural=True)
@reports_errors
def demo(out_dir: Path, workers: int, no_progress: bool) -> None:
    """Run the whole job on generated data: a simulated two-camera rig, calibration against
    the known answer, renders, datasets and exports, short training runs and evaluation;
    ends with the path of one HTML page that links everything."""
    from expokit.demo import run_demo

    result = run_demo(out_dir, workers=workers, progress=not no_progress)
    if not result.ok:
        sys.exit(1)


cli.add_command(capture)
cli.add_command(calibrate)
cli.add_command(align)
register_build(curate)
register_tools(curate)
cli.add_command(infer)
cli.add_command(eval_command)
cli.add_command(train)
cli.add_command(simulate_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
