"""``expokit curate build``: the click front of :mod:`expokit.curation.build.driver`.

The lead wires it with ``register(curate)``. Heavy libraries are imported inside the
command; this module only needs click and the config constants.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from expokit.cli.common import (
    FINITE_FLOAT,
    FiniteFloatRange,
    given_on_command_line,
    jobs_option,
    out_option,
    progress_option,
    reports_errors,
)
from expokit.core.parallel import EXECUTORS

# Kept literal (checked against build_config in tests) so `expokit --help` imports nothing heavy.
KINDS = ("auto", "capture", "render", "sequences", "msec", "flat")
ORDERS = ("auto", "name", "exif")
FORMATS = ("png", "jpg")
CAPTURE_SCENES = ("session", "shot")
GROUP_BY = ("pattern", "exposure", "time")
DEFAULT_GROUP_PATTERN = r"(?P<scene>.+)_(?P<tag>[^_]+)\.\w+"

#: CLI option -> BuildConfig field that only chooses files (flat sources; not in the
#: per-scene parameters, see build_config.DISCOVERY_FIELDS).
DISCOVERY_OPTIONS: dict[str, str] = {
    "group_by": "group_by",
    "group_pattern": "group_pattern",
    "bracket_gap": "bracket_gap_s",
}

#: CLI option -> QaThresholds field. Their defaults are None (a --config file's value, else
#: QaThresholds' default, stands); each help says "[default: X]", checked by the tests.
QA_OPTIONS: dict[str, str] = {
    "min_psnr": "min_psnr_db",
    "min_ssim": "min_ssim",
    "max_residual": "max_residual_px",
    "min_ecc": "min_ecc_correlation",
    "max_clipped_input": "max_clipped_input",
    "max_clipped_target": "max_clipped_target",
    "min_valid_fraction": "min_valid_fraction",
    "min_usable_fraction": "min_usable_fraction",
    "max_gain_deviation": "max_gain_deviation_ev",
    "max_gain_instability": "max_gain_instability_ev",
    "max_target_flicker": "max_target_flicker",
    "min_focus_ratio": "min_focus_ratio",
}

#: CLI option -> BuildConfig field (per-scene parameters).
CONFIG_OPTIONS: dict[str, str] = {
    "kind": "kind",
    "target_ev": "target_ev",
    "target_rank": "target_rank",
    "order": "sequence_order",
    "ecc": "ecc_refine",
    "ecc_max_side": "ecc_max_side",
    "max_side": "max_side",
    "image_format": "image_format",
    "capture_scene": "capture_scene",
    "video_step": "video_frame_step",
    "render_format": "render_format",
}


def config_from_options(ctx: click.Context, options: dict[str, Any]) -> Any:
    """A :class:`~expokit.curation.build.config.BuildConfig` from ``--config`` and options.

    Options given on the command line override the config file; the file overrides the
    defaults.
    """
    from expokit.curation.build.config import (
        BuildConfig,
        BuildConfigError,
        QaThresholds,
        load_build_config,
    )
    from expokit.curation.build.splits import SplitSpec, load_split_lists, parse_fractions

    data: dict[str, Any] = {}
    base = BuildConfig()
    if options["config_file"] is not None:
        data = load_build_config(options["config_file"])
        try:
            base = BuildConfig.from_dict(data)
        except BuildConfigError as exc:
            # Name the file: the key alone does not say where the bad value came from.
            raise BuildConfigError(f"{options['config_file']}: {exc}") from None
    use_file = options["config_file"] is not None
    values = {f: getattr(base, f) for f in base.scene_params()}
    values["kind"] = base.kind
    for option, field_name in {**CONFIG_OPTIONS, **DISCOVERY_OPTIONS}.items():
        if not use_file or given_on_command_line(ctx, option):
            values[field_name] = options[option]
    if not use_file or given_on_command_line(ctx, "no_crop"):
        values["crop"] = not options["no_crop"]
    qa = base.qa.to_dict()
    for option, field_name in QA_OPTIONS.items():
        if options[option] is not None:
            qa[field_name] = options[option]
    splits = base.splits
    if options["split_lists"] is not None:
        splits = SplitSpec(
            lists=load_split_lists(options["split_lists"]),
            default_split=options["default_split"],
            lists_source=str(options["split_lists"]),
        )
    elif (
        not use_file
        or given_on_command_line(ctx, "split_fractions")
        or given_on_command_line(ctx, "salt")
    ):
        fractions = (
            parse_fractions(options["split_fractions"])
            if not use_file or given_on_command_line(ctx, "split_fractions")
            else splits.fractions
        )
        salt = (
            options["salt"] if not use_file or given_on_command_line(ctx, "salt") else splits.salt
        )
        splits = SplitSpec(fractions=fractions, salt=salt)
    if options["default_split"] is not None and options["split_lists"] is None:
        raise click.BadParameter(
            "--default-split needs --split-lists", param_hint="--default-split"
        )
    return BuildConfig(**values, qa=QaThresholds(**qa), splits=splits)


def _run_build(ctx: click.Context, options: dict[str, Any]) -> None:
    from expokit.curation.build.config import BuildConfigError
    from expokit.curation.build.driver import build_dataset
    from expokit.curation.build.splits import SplitError

    if not options["sources"] and not options["remove_scene"]:
        raise click.UsageError("give at least one SOURCE folder (or only --remove-scene)")
    try:
        config = config_from_options(ctx, options)
    except (BuildConfigError, SplitError) as exc:
        raise click.BadParameter(str(exc)) from None
    summary = build_dataset(
        options["sources"],
        options["out_dir"],
        config,
        rig_calibration=options["rig_calibration"],
        sync_files=options["sync"],
        workers=options["workers"],
        executor=options["executor"],
        progress=not options["no_progress"],
        csv=options["csv"],
        remove_scenes=options["remove_scene"],
    )
    for text, problem in summary.report():
        click.secho(text, fg="red" if problem else None, err=problem)
    if not summary.ok:
        sys.exit(1)


def _options(func: Any) -> Any:
    path = click.Path(path_type=Path)
    options: list[Callable[[Any], Any]] = [
        click.argument("sources", nargs=-1, required=False, type=path),
        out_option("Dataset root (created if missing). On an existing dataset the scenes of "
                   "SOURCE are added or updated and every other scene is kept.", required=True),
        click.option("--remove-scene", multiple=True, metavar="SCENE_ID",
                     help="Remove this scene (rows, and the files its build wrote that are "
                     "unchanged); repeatable. SOURCE may then be omitted."),
        click.option("--kind", type=click.Choice(KINDS), default="auto", show_default=True,
                     help="Source type; auto: journal.jsonl=capture, render_params.json=render, "
                     "INPUT_IMAGES/=msec, else a folder of scene folders=sequences. flat (never "
                     "auto): one folder of images cut into scenes by --group-by."),
        click.option("--config", "config_file", type=path, default=None,
                     help="JSON/TOML file of build parameters; options given here override it."),
        click.option("--rig-calibration", type=path, default=None,
                     help="rig_calibration.json for capture sources (default: found in or "
                     "next to the session)."),
        click.option("--sync", multiple=True, type=path,
                     help="sync.json (or a folder of them) for video shots; repeatable."),
        click.option("--target-ev", type=FINITE_FLOAT, default=0.0, show_default=True,
                     help="Render sources: the EV used as target."),
        click.option("--target-rank", type=int, default=None,
                     help="Sequence sources: 0-based target position in exposure order "
                     "(negative from the brightest); default the middle."),
        click.option("--order", type=click.Choice(ORDERS), default="auto", show_default=True,
                     help="Sequence order: EXIF exposure, file name, or EXIF when all have it."),
        click.option("--ecc", is_flag=True, help="Refine each pair's alignment by ECC."),
        click.option("--ecc-max-side", type=click.IntRange(min=64), default=1024,
                     show_default=True, help="ECC working resolution (longer side, px)."),
        click.option("--max-side", type=click.IntRange(min=32), default=None,
                     help="Downscale stored images to this longer side (px)."),
        click.option("--no-crop", is_flag=True,
                     help="Keep full frames (use the mask) instead of cropping to the valid "
                     "rectangle."),
        click.option("--format", "image_format", type=click.Choice(FORMATS), default="png",
                     show_default=True, help="Stored image format; 16-bit inputs stay 16-bit PNG."),
        click.option("--capture-scene", type=click.Choice(CAPTURE_SCENES), default="session",
                     show_default=True, help="Capture stills: one scene per session or per shot."),
        click.option("--video-step", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Keep every n-th frame pair of a video clip."),
        click.option("--group-by", type=click.Choice(GROUP_BY), default="pattern",
                     show_default=True,
                     help="--kind flat: pattern = files whose names give one 'scene' group of "
                     "--group-pattern; exposure = consecutive EXIF brackets in name order (a "
                     "repeated exposure starts the next); time = EXIF capture time, a pause "
                     "over --bracket-gap starts the next."),
        click.option("--group-pattern", default=None, metavar="REGEX",
                     help="--kind flat --group-by pattern: regex matched against each whole "
                     "file name, with a (?P<scene>...) group (optional (?P<tag>...)); default "
                     f"'{DEFAULT_GROUP_PATTERN}' (MEFB: Candle_A.png + Candle_B.png)."),
        click.option("--bracket-gap", type=FiniteFloatRange(min=0, min_open=True), default=2.0,
                     show_default=True,
                     help="--group-by time: largest pause (s) between shots of one bracket."),
        click.option("--render-format", default=None,
                     help="Render sources with several formats: which output_format to use."),
        click.option("--split-fractions", default="0.8,0.1,0.1", show_default=True,
                     help="train,val,test fractions (or name=fraction,...)."),
        click.option("--split-lists", type=path, default=None,
                     help="JSON {split: [scene_id, ...]} or '<split> <scene_id>' lines."),
        click.option("--default-split", default=None,
                     help="With --split-lists: split of scenes listed nowhere (default: error)."),
        click.option("--salt", default="expokit-v1", show_default=True,
                     help="Salt of the scene-id hash that draws the splits."),
        click.option("--min-psnr", type=FINITE_FLOAT, default=None,
                     help="QA: low_psnr below (dB) [default: 18.0]."),
        click.option("--min-ssim", type=FINITE_FLOAT, default=None,
                     help="QA: low_ssim below [default: 0.5]."),
        click.option("--max-residual", type=FINITE_FLOAT, default=None,
                     help="QA: misaligned above this flow residual (px) [default: 1.0]."),
        click.option("--min-ecc", type=FINITE_FLOAT, default=None,
                     help="QA: low_ecc below [default: 0.9]."),
        click.option("--max-clipped-input", type=FINITE_FLOAT, default=None,
                     help="QA: clipped_input above this fraction [default: 0.25]."),
        click.option("--max-clipped-target", type=FINITE_FLOAT, default=None,
                     help="QA: clipped_target above this fraction [default: 0.1]."),
        click.option("--min-valid-fraction", type=FINITE_FLOAT, default=None,
                     help="QA: small_valid_region below this fraction of the frame "
                     "[default: 0.5]."),
        click.option("--min-usable-fraction", type=FINITE_FLOAT, default=None,
                     help="QA: fit_unreliable below this fraction of valid pixels unclipped "
                     "in both images (its fit is then not judged) [default: 0.2]."),
        click.option("--max-gain-deviation", type=FINITE_FLOAT, default=None,
                     help="QA: gain_outlier when the gain departs from its group's median "
                     "by more than this (EV) [default: 0.1]."),
        click.option("--max-gain-instability", type=FINITE_FLOAT, default=None,
                     help="QA: gain_unstable when a clip's per-frame gain spreads more than "
                     "this (EV) [default: 0.02]."),
        click.option("--max-target-flicker", type=FINITE_FLOAT, default=None,
                     help="QA: target_flicker when a clip's scene light oscillates with a "
                     "relative amplitude above this [default: 0.02]."),
        click.option("--min-focus-ratio", type=FINITE_FLOAT, default=None,
                     help="QA: defocus when input/target sharpness is below this or above "
                     "its inverse [default: 0.8]."),
        jobs_option(help="Parallel worker processes (spawn) or Ray CPUs."),
        click.option("--executor", type=click.Choice(EXECUTORS), default="local",
                     show_default=True, help="ray: per-scene Ray tasks (extra [ray])."),
        click.option("--csv", is_flag=True, help="Also write manifest.csv."),
        progress_option(),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def register(group: click.Group) -> None:
    """Add the ``build`` command to the ``curate`` group."""

    @group.command("build")
    @_options
    @click.pass_context
    @reports_errors
    def build(ctx: click.Context, **options: Any) -> None:
        """Build a paired dataset (format v1) from capture sessions, renders or collections.

        Each SOURCE is a capture session (or folder of sessions), an `expokit render`
        output, a folder of SICE-style sequence folders, an MSEC folder, or (--kind flat)
        one folder of image files grouped by name pattern or EXIF brackets. EVs come from
        EXIF exposure times, else are ranks (ev_basis rank, recorded and reported). Pairs
        are aligned (rig homography, optional ECC), measured (gain, residual, PSNR/SSIM, clipping,
        focus; the gain against the rig's, its stability and the target's flicker per clip),
        flagged (docs/qa.md) and split by scene. Scenes already built with the same inputs and
        parameters are skipped; failed scenes are listed and the exit status is 1.

        Building into an existing dataset is incremental: scenes of other sources are kept
        (with their split) and only --remove-scene removes scenes. The --out folder must be
        new, empty or an expokit dataset, and one build at a time may write it (a second
        one stops with "in use by pid N").
        """
        _run_build(ctx, options)
