"""``expokit align ...``: live checks of the rig's alignment (front for calibration/)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from expokit.cli_common import reports_errors


@click.group()
def align() -> None:
    """Alignment checks: how far the test camera is from the reference, with advice."""


@align.command("check")
@click.argument("reference", metavar="REF", type=click.Path(path_type=Path))
@click.argument("test", metavar="TEST", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option(
    "--flip",
    type=click.Choice(["auto", "none", "horizontal", "vertical", "both"]),
    default="auto",
    show_default=True,
    help="Mirror of the test view (auto: detect).",
)
@click.option(
    "--expected-ev",
    type=float,
    default=None,
    help="Expected EV offset test - reference; checked when given.",
)
@click.option("--linear", is_flag=True, help="The files hold linear light (default: sRGB-encoded).")
@click.option(
    "--max-roll", type=float, default=0.1, show_default=True, help="Largest roll for ready (deg)."
)
@click.option(
    "--max-scale", type=float, default=0.2, show_default=True, help="Largest scale error (%)."
)
@click.option("--max-shift", type=float, default=1.0, show_default=True, help="Largest shift (px).")
@click.option("--no-ecc", is_flag=True, help="Plain SIFT + USAC_MAGSAC, no ECC refinement.")
@reports_errors
def check(
    reference: Path,
    test: Path,
    as_json: bool,
    flip: str,
    expected_ev: float | None,
    linear: bool,
    max_roll: float,
    max_scale: float,
    max_shift: float,
    no_ecc: bool,
) -> None:
    """Compare one view from each camera (live-view frames or stills of a textured scene).

    Prints flip, roll, scale, shift, keystone, parallax, EV offset, white balance, focus
    ratio and coverage of the test view against the reference, a verdict (ready/adjust)
    and advice as seen from behind the test camera. Exits 0 either way; 1 on bad input.
    """
    from expokit.calibration.alignment_check import (
        AlignmentCheckConfig,
        AlignmentThresholds,
        check_alignment,
        describe,
    )

    try:
        thresholds = AlignmentThresholds(
            max_roll_deg=max_roll,
            max_scale_pct=max_scale,
            max_shift_px=max_shift,
            expected_ev=expected_ev,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    config = AlignmentCheckConfig(
        thresholds=thresholds,
        flip=flip,
        transfer="linear" if linear else "srgb",
        ecc=not no_ecc,
    )
    result = check_alignment(reference, test, config)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for line in describe(result):
        click.echo(line)
