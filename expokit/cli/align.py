"""``expokit align ...``: live checks of the rig's alignment (front for calibration/)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from expokit.cli.common import FINITE_FLOAT, reports_errors

P = ParamSpec("P")
R = TypeVar("R")


def _flip_option(command: Callable[P, R]) -> Callable[P, R]:
    """``--flip``: the test view's mirror, shared by ``check`` and ``live``."""
    return click.option(
        "--flip",
        type=click.Choice(["auto", "none", "horizontal", "vertical", "both"]),
        default="auto",
        show_default=True,
        help="Mirror of the test view (auto: detect).",
    )(command)


def _ready_options(command: Callable[P, R]) -> Callable[P, R]:
    """``--max-roll/--max-scale/--max-shift``: the "ready" bars of ``check`` and ``live``."""
    options = (
        click.option("--max-roll", type=FINITE_FLOAT, default=0.1, show_default=True,
                     help="Largest roll for ready (deg)."),
        click.option("--max-scale", type=FINITE_FLOAT, default=0.2, show_default=True,
                     help="Largest scale error (%)."),
        click.option("--max-shift", type=FINITE_FLOAT, default=1.0, show_default=True,
                     help="Largest shift (px)."),
    )  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _thresholds(
    max_roll: float, max_scale: float, max_shift: float, expected_ev: float | None
) -> Any:
    """:class:`~expokit.calibration.alignment_check.AlignmentThresholds` of the options;
    a value it refuses is a ``BadParameter``."""
    from expokit.calibration.alignment_check import AlignmentThresholds

    try:
        return AlignmentThresholds(
            max_roll_deg=max_roll,
            max_scale_pct=max_scale,
            max_shift_px=max_shift,
            expected_ev=expected_ev,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group()
def align() -> None:
    """Alignment checks: how far the test camera is from the reference, with advice."""


@align.command("check")
@click.argument("reference", metavar="REF", type=click.Path(path_type=Path))
@click.argument("test", metavar="TEST", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@_flip_option
@click.option(
    "--expected-ev",
    type=FINITE_FLOAT,
    default=None,
    help="Expected EV offset test - reference; checked when given.",
)
@click.option("--linear", is_flag=True, help="The files hold linear light (default: sRGB-encoded).")
@_ready_options
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
        check_alignment,
        describe,
    )

    thresholds = _thresholds(max_roll, max_scale, max_shift, expected_ev)
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


@align.command("live")
@click.option(
    "--rig",
    "rig_path",
    required=True,
    type=click.Path(path_type=Path),
    help="Rig TOML (backend, roles bound by serial).",
)
@click.option("--terminal", is_flag=True, help="No page: print one plain line per analysis.")
@click.option(
    "--port", type=int, default=8765, show_default=True, help="Port of the page on 127.0.0.1."
)
@click.option(
    "--pairs", type=int, default=0, show_default=True, help="Stop after this many (0: Ctrl-C)."
)
@click.option(
    "--full-every",
    type=int,
    default=15,
    show_default=True,
    help="Full check every N pairs; ECC tracking in between (1: full check on every pair).",
)
@_flip_option
@click.option(
    "--expected-ev",
    type=FINITE_FLOAT,
    default=None,
    help="Expected EV offset test - reference (default: the rig's ev_offset).",
)
@_ready_options
@click.option(
    "--calibration-pairs",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="Calibration pairs the calibrate key shoots.",
)
@click.option(
    "--charuco",
    metavar="COLSxROWS",
    default="7x5",
    show_default=True,
    help="ChArUco board of the calibration stills (features where it is not seen).",
)
@click.option(
    "--square", type=FINITE_FLOAT, default=0.04, show_default=True, help="Square side (m)."
)
@click.option(
    "--marker", type=FINITE_FLOAT, default=0.028, show_default=True, help="Marker side (m)."
)
@click.option(
    "--session", "session_name", default=None, help="Name of the session the calibrate key makes."
)
@click.option("--no-apply", is_flag=True, help="Leave the bodies' settings as they are.")
@reports_errors
def live(
    rig_path: Path,
    terminal: bool,
    port: int,
    pairs: int,
    full_every: int,
    flip: str,
    expected_ev: float | None,
    max_roll: float,
    max_scale: float,
    max_shift: float,
    calibration_pairs: int,
    charuco: str,
    square: float,
    marker: float,
    session_name: str | None,
    no_apply: bool,
) -> None:
    """Live alignment assistant: both bodies' live view, analysed continuously.

    Opens the rig's reference and test bodies (by serial, as capture does) and compares
    their live-view frames: a page on http://127.0.0.1:PORT/ shows both views, a blend /
    difference / checkerboard overlay with the mirror undone, the figures of ``align check``
    with arrows, traffic lights and a minute of history, and a READY banner. ``--terminal``
    prints one plain line per analysis instead (headless rigs). Ctrl-C stops.

    Each role's settings are applied first (so the live view shows the exposure offset;
    --no-apply leaves them). The page's "Shoot calibration stills & calibrate" button (in
    --terminal: type c and Enter) pauses the live view, shoots --calibration-pairs pairs
    into a session under the rig's output_root, runs `calibrate geometry` on them into
    SESSION/calibration/NN/ and journals the outcome (rig_calibrated / calibration_failed).
    """
    import threading

    from expokit.calibration.alignment_check import AlignmentCheckConfig
    from expokit.calibration.boards import BoardSpec
    from expokit.calibration.live import (
        LiveAnalyzer,
        LiveConfig,
        LiveResult,
        LiveState,
        RigPreviewSource,
        format_line,
        run_live,
    )
    from expokit.calibration.live_calibration import LiveCalibrationConfig, LiveCalibrator
    from expokit.capture.commands import CalibrationShooter
    from expokit.capture.rig_config import ROLES, load_rig_config
    from expokit.capture.runner import Rig

    config = load_rig_config(rig_path)
    if expected_ev is None:
        expected_ev = config.ev_offset
    thresholds = _thresholds(max_roll, max_scale, max_shift, expected_ev)
    try:
        live_config = LiveConfig(
            check=AlignmentCheckConfig(thresholds=thresholds, flip=flip, max_side=1024),
            full_every=full_every,
        )
        board = BoardSpec.parse("charuco", charuco, square, marker, "DICT_6X6_250")
        calibration_config = LiveCalibrationConfig(pairs=calibration_pairs, board=board)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    state = LiveState(live_config.history_s)
    analyzer = LiveAnalyzer(live_config)
    stop = threading.Event()

    def on_result(result: LiveResult) -> None:
        if terminal:
            click.echo(format_line(result, state.pairs_per_s()))

    def on_error(message: str) -> None:
        if terminal:
            click.echo(f"no analysis: {message}")

    def on_calibration(outcome: dict[str, Any]) -> None:
        click.echo(f"calibration {outcome['status']}: {outcome['message']}")

    with Rig(config) as rig:
        if not no_apply:
            rig.preflight()
            for role in ROLES:
                settings, _ = rig.base_settings(role)
                for mismatch in rig.apply(role, rig.resolve(role, settings)):
                    click.echo(f"warning: {role}: {mismatch}")
        source = RigPreviewSource(rig)
        shooter = CalibrationShooter(config, rig, session_name)
        calibrator = LiveCalibrator(shooter, calibration_config)
        server = keys = None
        state.can_calibrate = True
        if terminal:
            keys = _read_keys(state, stop)
            click.echo("type c and Enter to shoot calibration stills and calibrate")
        else:
            from expokit.calibration.live_page import LiveServer

            server = LiveServer(state, port=port).start()
            click.echo(f"live alignment page: {server.url} (Ctrl-C stops)")
        try:
            run_live(
                source,
                analyzer,
                state,
                stop,
                max_pairs=pairs or None,
                on_result=on_result,
                on_error=on_error,
                calibrate=calibrator,
                on_calibration=on_calibration,
            )
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            analyzer.close()
            shooter.close()
            if server is not None:
                server.stop()
            if keys is not None:
                keys.join(timeout=1)


def _read_keys(state: Any, stop: Any) -> Any:
    """Terminal mode's calibration key: a thread reading stdin lines (``c`` requests a
    calibration) that ends at end of input or soon after ``stop`` is set (it waits on the
    descriptor with a timeout, so the interpreter never exits under a blocked read)."""
    import select
    import threading

    # sys.stdin, not click.get_text_stream (deprecated in click 8.5): CliRunner swaps it too.
    stream = sys.stdin
    try:
        descriptor: int | None = stream.fileno()
    except (AttributeError, OSError, ValueError):
        descriptor = None  # an in-memory stream (tests): reads never block for long

    def read() -> None:
        while not stop.is_set():
            if descriptor is not None:
                ready, _, _ = select.select([descriptor], [], [], 0.2)
                if not ready:
                    continue
            line = stream.readline()
            if not line:
                return  # end of input: no more keys
            if line.strip().lower() == "c" and not state.request_calibration():
                click.echo("calibration: one is already under way")

    thread = threading.Thread(target=read, name="expokit-live-keys", daemon=True)
    thread.start()
    return thread
