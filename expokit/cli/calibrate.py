"""``expokit calibrate ...``: rig geometry and temporal sync (front for calibration/)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from expokit.cli.common import FINITE_FLOAT, fail, out_option, reports_errors


@click.group()
def calibrate() -> None:
    """Calibration: rig geometry (flip, intrinsics, homography) and temporal sync."""


def rms_rise_note(
    method: str, initial_rms: float, final_rms: float, ecc: dict[str, Any] | None
) -> str | None:
    """Why the printed inlier RMS may rise after ECC, or ``None`` when it does not rise.

    The initial homography is the least-squares fit to the inliers, so any other homography
    scores a higher RMS on them; ECC aligns intensities over the whole overlap instead (on
    graf1 -> graf3 it halves the error against the ground truth while the feature RMS
    doubles). Compared as printed (3 decimals).
    """
    if ecc is None or not ecc.get("kept", True) or round(final_rms, 3) <= round(initial_rms, 3):
        return None
    import textwrap

    what = "feature inliers'" if method == "features" else "board corners'"
    kept = "Kept: ECC's homography"
    if method != "features" and "board_reprojection_rms_ecc" in ecc:
        kept += " (its corner RMS rose within the tolerance of the board rule)"
    text = (
        "RMS rose with ECC: ECC aligns intensities over the whole overlap, so its homography "
        f"is judged by the ECC correlation ({ecc['initial_correlation']:.4f} -> "
        f"{ecc['correlation']:.4f}) and the grid error, not by the {what} reprojection RMS, "
        f"which it is not fitted to. {kept}."
    )
    return textwrap.fill(text, width=92, initial_indent=" " * 12, subsequent_indent=" " * 12)


@calibrate.command("geometry")
@click.argument("reference", metavar="REFERENCE")
@click.argument("test", metavar="[TEST]", required=False)
@out_option(
    "Folder for rig_calibration.json and the QA images (created if missing).",
    required=True,
)
@click.option("--charuco", metavar="COLSxROWS", help="ChArUco board in squares, e.g. 7x5.")
@click.option("--chessboard", metavar="COLSxROWS", help="Chessboard inner corners, e.g. 9x6.")
@click.option(
    "--square", type=FINITE_FLOAT, default=None, help="Square side (m). ChArUco default 0.04."
)
@click.option(
    "--marker", type=FINITE_FLOAT, default=None, help="ChArUco marker side (m); default square/2."
)
@click.option("--dictionary", default="DICT_6X6_250", show_default=True, help="ArUco dictionary.")
@click.option(
    "--intrinsics",
    "estimate_intrinsics",
    is_flag=True,
    help="Calibrate both cameras (calibrateCamera) from the board views and undistort.",
)
@click.option(
    "--reference-intrinsics",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Known reference intrinsics: OpenCV YAML/XML or expokit JSON.",
)
@click.option(
    "--test-intrinsics",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Known test intrinsics (in the flipped frame).",
)
@click.option(
    "--flip",
    type=click.Choice(["auto", "none", "horizontal", "vertical", "both"]),
    default="auto",
    show_default=True,
    help="Mirror flip of the test image.",
)
@click.option("--no-ecc", is_flag=True, help="Skip the ECC refinement.")
@click.option(
    "--ecc-max-side",
    type=click.IntRange(min=64),
    default=3000,
    show_default=True,
    help="Longest side ECC works at (larger is slower and more precise).",
)
@click.option(
    "--fallback-features",
    is_flag=True,
    help="If the board is not found, use SIFT features instead of failing.",
)
@click.option("--no-qa", is_flag=True, help="Do not write the QA PNGs.")
@click.option("--verbose", "-v", is_flag=True, help="Log every decision (flip, fits, ECC).")
@reports_errors
def calibrate_geometry_cmd(
    reference: str,
    test: str | None,
    out_dir: Path,
    charuco: str | None,
    chessboard: str | None,
    square: float | None,
    marker: float | None,
    dictionary: str,
    estimate_intrinsics: bool,
    reference_intrinsics: Path | None,
    test_intrinsics: Path | None,
    flip: str,
    no_ecc: bool,
    ecc_max_side: int,
    fallback_features: bool,
    no_qa: bool,
    verbose: bool,
) -> None:
    """Find the test camera's flip and its homography onto the reference camera.

    REFERENCE and TEST are each an image, a folder of images or a quoted glob
    ('pairs/left*.jpg'); they are paired in natural name order. Views of a ChArUco board
    or chessboard, or of any textured scene; exposures may differ by several EV. A capture
    session folder alone (no TEST) takes its calibration stills from the journal.

    \b
    expokit calibrate geometry ref.jpg test.jpg --out rig/
    expokit calibrate geometry sessions/S --out rig/ --charuco 7x5 --square 0.04 \\
        --marker 0.028
    expokit calibrate geometry left/ right/ --out rig/ --charuco 7x5 --square 0.04 \\
        --marker 0.028
    expokit calibrate geometry 'p/left*.jpg' 'p/right*.jpg' -o rig/ --chessboard 9x6 \\
        --square 0.025 --intrinsics
    """
    import logging
    import textwrap

    from expokit.calibration.boards import BoardSpec
    from expokit.calibration.geometry import GeometryConfig, calibrate_geometry
    from expokit.calibration.geometry_io import resolve_images, session_calibration_stills
    from expokit.calibration.homography import EccSettings
    from expokit.calibration.intrinsics import load_intrinsics
    from expokit.capture.session import JOURNAL_FILE

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if charuco and chessboard:
        raise click.UsageError("give --charuco or --chessboard, not both")
    try:
        board = None
        if charuco:
            board = BoardSpec.parse("charuco", charuco, square or 0.04, marker, dictionary)
        elif chessboard:
            board = BoardSpec.parse("chessboard", chessboard, square or 1.0)
        elif square is not None or marker is not None:
            raise click.UsageError("--square/--marker need --charuco or --chessboard")
        ref_intr = load_intrinsics(reference_intrinsics) if reference_intrinsics else None
        test_intr = load_intrinsics(test_intrinsics) if test_intrinsics else None
        config = GeometryConfig(
            flip=flip,
            estimate_intrinsics=estimate_intrinsics,
            reference_intrinsics=ref_intr,
            test_intrinsics=test_intr,
            feature_fallback=fallback_features,
            ecc=None if no_ecc else EccSettings(max_side=ecc_max_side),
            qa_images=not no_qa,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if test is None:
        if not (Path(reference) / JOURNAL_FILE).is_file():
            raise click.UsageError(
                "give TEST images, or a capture session folder alone as REFERENCE"
            )
        refs, tests = session_calibration_stills(reference)
    else:
        refs, tests = resolve_images(reference), resolve_images(test)
    if len(refs) != len(tests):
        fail(f"{len(refs)} reference images but {len(tests)} test images ({reference}, {test})")
        return
    calib = calibrate_geometry(refs, tests, out_dir, board, config)
    scores = ", ".join(f"{k} {v:g}" for k, v in calib.mirror.scores.items())
    click.echo(f"pairs       {len(calib.pairs)}")
    evidence = f"by {calib.mirror.method}" + (f"; {scores}" if scores else "")
    ambiguous = click.style("  AMBIGUOUS", fg="yellow") if calib.mirror.ambiguous else ""
    click.echo(f"flip        {calib.flip.value} ({evidence}){ambiguous}")
    for role, intr in (("reference", calib.reference_intrinsics), ("test", calib.test_intrinsics)):
        if intr is not None and intr.rms is not None:
            origin = f"{intr.views} views" if intr.views else intr.source
            click.echo(f"intrinsics  {role}: RMS {intr.rms:.3f} px ({origin})")
    if calib.stereo_rms is not None:
        click.echo(f"stereo RMS  {calib.stereo_rms:.3f} px")
    click.echo(
        f"homography  from {calib.method}: {calib.inliers}/{calib.correspondences} inliers, "
        f"RMS {calib.initial_reprojection_rms:.3f} -> {calib.reprojection_rms:.3f} px"
    )
    if calib.ecc is not None:
        click.echo(
            f"ECC         {calib.ecc['motion']}: correlation "
            f"{calib.ecc['initial_correlation']:.4f} -> {calib.ecc['correlation']:.4f}"
            + ("" if calib.ecc.get("kept", True) else f" (discarded: {calib.ecc['reason']})")
        )
    note = rms_rise_note(
        calib.method, calib.initial_reprojection_rms, calib.reprojection_rms, calib.ecc
    )
    if note:
        click.echo(note)
    if calib.parallax is not None:
        click.echo(
            textwrap.fill(
                f"WARNING     {calib.parallax['description']} (pair {calib.parallax['pair']}): "
                "a homography aligns one depth only; the entrance pupils do not coincide. "
                "Run `expokit align check` on a view with the board near and texture far to "
                "see which way to move the test body.",
                width=92, subsequent_indent=" " * 12,
            )
        )  # fmt: skip
    x, y, w, h = calib.valid_region
    click.echo(
        f"valid       x={x} y={y} {w}x{h} of {calib.reference_size[0]}x{calib.reference_size[1]}"
    )
    click.echo(
        f"wrote       {out_dir / 'rig_calibration.json'}"
        + (f" + {len(calib.qa_images)} QA images" if calib.qa_images else "")
    )


@calibrate.command("sync")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@out_option(
    "Where sync.json is written (atomically); an existing file is replaced only when "
    "it is an earlier sync.json.",
    dest="out_path",
    default=Path("sync.json"),
)
@click.option(
    "--apply",
    "apply_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write trimmed, synchronized copies of A and B into this folder (existing "
    "files are replaced only when the earlier sync.json at --out recorded them).",
)
@click.option(
    "--method",
    type=click.Choice(["auto", "audio", "brightness"]),
    default="auto",
    show_default=True,
    help="auto: audio when both files have an audible track, else frame brightness.",
)
@click.option(
    "--rate", "sample_rate", type=int, default=None, help="Audio rate for the correlation [16000]."
)
@click.option(
    "--max-offset",
    type=FINITE_FLOAT,
    default=None,
    help="Largest |offset| searched, seconds [any].",
)
@click.option(
    "--min-confidence",
    type=FINITE_FLOAT,
    default=None,
    help="Refuse results below it [0.25]; 0 accepts anything (with a warning).",
)
@reports_errors
def calibrate_sync(
    a: Path,
    b: Path,
    out_path: Path,
    apply_dir: Path | None,
    method: str,
    sample_rate: int | None,
    max_offset: float | None,
    min_confidence: float | None,
) -> None:
    """Synchronize two recordings of one scene (audio, or frame brightness without audio).

    Writes sync.json: offset_s = t_B - t_A (an event at t in A is at t + offset_s in B),
    drift (ppm), confidence, method, per-file fps and decoded frame counts, and the B frame
    shown at each A frame. --apply writes both files cut to their common time span.
    """
    from expokit.calibration.sync import (
        apply_sync,
        apply_targets,
        describe_result,
        drift_warning,
        synchronize,
    )
    from expokit.calibration.sync_record import (
        SyncConfig,
        check_sync_json_target,
        recorded_outputs,
        write_sync_json,
    )

    overrides: dict[str, Any] = {"method": method, "max_offset_s": max_offset}
    if sample_rate is not None:
        overrides["sample_rate"] = sample_rate
    if min_confidence is not None:
        overrides["min_confidence"] = min_confidence
    try:
        config = SyncConfig(**overrides)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    # Every output is checked before the (slow) sync and before anything is written:
    # never an input video, a file of an expokit folder, or a file expokit did not write.
    check_sync_json_target(out_path, [a, b])
    recorded = recorded_outputs(out_path)  # read before sync.json is replaced
    result = synchronize(a, b, config)
    if apply_dir is not None:
        apply_targets(result, apply_dir, recorded)
    write_sync_json(result, out_path)
    outputs = apply_sync(result, apply_dir, recorded) if apply_dir is not None else []
    if outputs:  # recorded, so that a re-run may replace exactly these copies
        write_sync_json(result, out_path, applied=outputs)
    for line in describe_result(result):
        click.secho(line, fg="yellow" if line.startswith("warning") else None)
    click.echo(f"wrote {out_path}")
    for path in outputs:
        click.echo(f"wrote {path}")
    warning = drift_warning(result) if outputs else None
    if warning:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


@calibrate.command("pair-stills")
@click.argument("session", type=click.Path(path_type=Path))
@click.option(
    "--tolerance",
    type=FINITE_FLOAT,
    default=1.0,
    show_default=True,
    help="Largest host trigger-time difference of a pair (seconds).",
)
@click.option("--no-exif", is_flag=True, help="Skip the EXIF DateTimeOriginal check.")
@out_option("Also write the pairing as JSON here.", dest="out_path")
@click.option("--strict", is_flag=True, help="Exit 1 when a shot is unmatched, missing or flagged.")
@reports_errors
def calibrate_pair_stills(
    session: Path, tolerance: float, no_exif: bool, out_path: Path | None, strict: bool
) -> None:
    """Pair the two cameras' stills of a capture session by host trigger time.

    Lists unmatched shots; EXIF DateTimeOriginal (1 s resolution) is only a check, and
    shots whose EXIF time disagrees with the host time by more than 2 s are flagged.
    """
    from expokit.calibration.still_pairs import pair_stills
    from expokit.core.atomic import atomic_write_json, read_json_object
    from expokit.core.paths import check_output_file

    def is_pairing(path: Path) -> bool:
        data = read_json_object(path)
        return data is not None and {"session", "pairs", "unmatched"} <= set(data)

    try:
        if out_path is not None:  # never a session's journal or a file we did not write
            check_output_file(
                out_path,
                inputs=[session / "journal.jsonl"],
                what="pairing output (--out)",
                is_own_output=is_pairing,
            )
        pairing = pair_stills(session, tolerance, check_exif=not no_exif)
        if out_path is not None:
            atomic_write_json(out_path, pairing.to_dict())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    for line in pairing.describe():
        click.echo(line)
    if out_path is not None:
        click.echo(f"wrote {out_path}")
    if strict and not pairing.ok:
        sys.exit(1)
