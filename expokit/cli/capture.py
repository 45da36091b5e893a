"""``expokit capture ...``: tethered two-camera capture (front for :mod:`expokit.capture`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from expokit.cli.common import FiniteFloatRange, progress_option, reports_errors


def _load_rig(path: Path) -> Any:
    from expokit.capture.rig_config import load_rig_config

    return load_rig_config(path)


_rig_option = click.option(
    "--rig",
    "rig_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Rig config (TOML): roles bound to serial numbers, settings, budgets.",
)
_progress_option = progress_option()
_session_option = click.option(
    "--session",
    "session_name",
    default=None,
    help="Name appended to the session folder: letters, digits, '.', '_', '-'.",
)


@click.group()
def capture() -> None:
    """Tethered capture with two cameras (reference and test exposure)."""


@capture.command("list")
@click.option(
    "--backend",
    type=click.Choice(["gphoto2", "fake"]),
    default="gphoto2",
    show_default=True,
    help="Camera backend: gphoto2 (USB bodies) or fake (simulated, no hardware).",
)
@click.option(
    "--rig",
    "rig_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Take the backend (and fake cameras) from a rig config.",
)
@reports_errors
def capture_list(backend: str, rig_path: Path | None) -> None:
    """List connected cameras: model, port, serial number."""
    from expokit.capture.factory import list_cameras

    if rig_path is not None:
        from expokit.capture.runner import Rig

        config = _load_rig(rig_path)
        Rig(config)  # configures fake cameras from the rig file
        backend = config.backend
    cameras = list_cameras(backend)
    if not cameras:
        click.echo("no cameras found")
    for info in cameras:
        click.echo(f"{info.model:30s} {info.port:16s} serial {info.serial}")


@capture.command("doctor")
@_rig_option
@reports_errors
def capture_doctor(rig_path: Path) -> None:
    """Preflight checks: libgphoto2, cameras, roles, settings round trip, disk, clocks."""
    from expokit.capture.commands import doctor

    checks = doctor(_load_rig(rig_path))
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    for check in checks:
        status = click.style(f"{check.status.upper():4s}", fg=colours[check.status])
        click.echo(f"{status} {check.name:20s} {check.detail}")
    if any(c.status == "fail" for c in checks):
        sys.exit(1)


@capture.command("apply")
@_rig_option
@reports_errors
def capture_apply(rig_path: Path) -> None:
    """Apply each role's settings, read them back and report mismatches."""
    from expokit.capture.commands import apply_settings

    result = apply_settings(_load_rig(rig_path))
    bad = False
    for role, mismatches in result.items():
        if not mismatches:
            click.echo(f"{role}: all settings read back as written")
        for m in mismatches:
            bad = True
            click.secho(
                f"{role}: {m['setting']} requested {m['requested']!r}, "
                f"camera reads {m['read_back']!r}",
                fg="red",
            )
    if bad:
        sys.exit(1)


def _print_report(root: Path, report: Any) -> None:
    click.echo(f"session: {root}")
    click.echo(
        f"shots done: {report.shots_done}, files: {report.files}, "
        f"retries: {report.retries}, reconnects: {report.reconnects}"
    )
    click.echo(report.skew_summary())
    if report.exif_mismatches:
        click.secho(
            f"EXIF differs from the request in {report.exif_mismatches} file(s): "
            "see exif_check events in journal.jsonl",
            fg="yellow",
        )
    if report.shots_failed:
        click.secho(
            f"failed shots: {report.shots_failed}; finish them with "
            f"`expokit capture resume {root}`",
            fg="red",
            err=True,
        )
        sys.exit(1)


def _shoot(rig_path: Path, kind: str, no_progress: bool, **kwargs: Any) -> None:
    from expokit.capture.commands import shoot

    config = _load_rig(rig_path)
    session, report = shoot(config, kind, progress=not no_progress, **kwargs)
    _print_report(session.root, report)


@capture.command("pair")
@_rig_option
@click.option(
    "--count", "-n", type=click.IntRange(min=1), default=1, show_default=True,
    help="Pairs to fire.",
)  # fmt: skip
@_session_option
@_progress_option
@reports_errors
def capture_pair(rig_path: Path, count: int, session_name: str | None, no_progress: bool) -> None:
    """Fire COUNT synchronized pairs (reference + test exposure)."""
    _shoot(rig_path, "pair", no_progress, count=count, session_name=session_name)


@capture.command("calibration")
@_rig_option
@click.option(
    "--count", "-n", type=click.IntRange(min=1), default=1, show_default=True,
    help="Calibration pairs to fire.",
)  # fmt: skip
@_session_option
@_progress_option
@reports_errors
def capture_calibration(
    rig_path: Path, count: int, session_name: str | None, no_progress: bool
) -> None:
    """Fire COUNT synchronized calibration pairs (a board or the scene seen by both).

    They are journaled as shots of kind `calibration`: `curate build` never makes dataset
    pairs of them; pass the two files to `expokit calibrate geometry REFERENCE TEST`. A
    fake rig whose [fake] table names a source serves a ChArUco board (7x5, square 0.04,
    marker 0.028, DICT_6X6_250).
    """
    _shoot(rig_path, "calibration", no_progress, count=count, session_name=session_name)


@capture.command("bracket")
@_rig_option
@click.option("--roles", default=None, help="Comma-separated roles to bracket (default: rig's).")
@_session_option
@_progress_option
@reports_errors
def capture_bracket(
    rig_path: Path, roles: str | None, session_name: str | None, no_progress: bool
) -> None:
    """Shoot the rig's bracket ladder on one or both roles."""
    from expokit.capture.rig_config import ROLES

    chosen = tuple(r.strip() for r in roles.split(",")) if roles else ()
    unknown = [r for r in chosen if r not in ROLES]
    if unknown:
        raise click.BadParameter(
            f"unknown role(s) {', '.join(map(repr, unknown))}; roles are {', '.join(ROLES)}",
            param_hint="--roles",
        )
    _shoot(rig_path, "bracket", no_progress, roles=chosen, session_name=session_name)


@capture.command("video")
@_rig_option
@click.option(
    "--seconds", type=FiniteFloatRange(min=0.1), required=True,
    help="Clip length (s, at least 0.1).",
)  # fmt: skip
@_session_option
@_progress_option
@reports_errors
def capture_video(
    rig_path: Path, seconds: float, session_name: str | None, no_progress: bool
) -> None:
    """Record SECONDS of video on both cameras, started together."""
    _shoot(rig_path, "video", no_progress, seconds=seconds, session_name=session_name)


@capture.command("resume")
@click.argument("session_dir", type=click.Path(path_type=Path))
@_progress_option
@reports_errors
def capture_resume(session_dir: Path, no_progress: bool) -> None:
    """Finish the planned shots of an interrupted session (nothing renumbered or repeated)."""
    from expokit.capture.commands import resume

    session, report = resume(session_dir, progress=not no_progress)
    _print_report(session.root, report)
