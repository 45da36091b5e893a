"""``expokit simulate``: a beam-splitter rig recording with the answer known (front for
:mod:`expokit.capture.simulate`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from expokit.cli.common import (
    FINITE_FLOAT,
    out_option,
    progress_option,
    reports_errors,
    seed_option,
)

if TYPE_CHECKING:
    from expokit.capture.defects import DefectSpec


def _defects(texts: tuple[str, ...]) -> tuple[DefectSpec, ...]:
    """``--defect`` texts parsed (a bad one is a usage error naming it)."""
    from expokit.capture.defects import DefectError, parse_defect

    try:
        return tuple(parse_defect(text) for text in texts)
    except DefectError as exc:
        raise click.BadParameter(
            str(exc).removeprefix("--defect "), param_hint="--defect"
        ) from None


def _size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise click.BadParameter(f"{text!r} is not WIDTHxHEIGHT, e.g. 320x240", param_hint="--size")
    return int(parts[0]), int(parts[1])


@click.command("simulate")
@click.argument("source")
@out_option("New session folder (must not exist or be empty).", required=True)
@click.option(
    "--ev-offset",
    type=FINITE_FLOAT,
    default=-2.0,
    show_default=True,
    help="Test exposure relative to the reference, EV (within +-8).",
)
@click.option(
    "--offset-s",
    type=FINITE_FLOAT,
    default=0.37,
    show_default=True,
    help="Start offset, sync.json convention (t_test - t_reference).",
)
@click.option(
    "--drift-ppm",
    type=FINITE_FLOAT,
    default=120.0,
    show_default=True,
    help="Test clock drift relative to the reference, ppm (within +-1000).",
)
@seed_option(help="Random seed (noise, generated scene; also the simulated serials).")
@click.option(
    "--seconds",
    type=FINITE_FLOAT,
    default=None,
    help="Recording length [generated: 10; else what the source allows].",
)
@click.option(
    "--size",
    "size_text",
    default=None,
    metavar="WxH",
    help="Sensor size [generated: 320x240; else the source's].",
)
@click.option(
    "--fps",
    type=FINITE_FLOAT,
    default=24.0,
    show_default=True,
    help="Frame rate of generated footage or a folder of frames.",
)
@click.option(
    "--splitter-ratio",
    type=FINITE_FLOAT,
    default=1.0,
    show_default=True,
    help="Beam splitter transmitted (reference) / reflected (test) light.",
)
@click.option(
    "--still-pairs",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    help="Shots of kind pair the simulated session holds (besides its video and calibration shot).",
)
@click.option(
    "--defect",
    "defect_texts",
    multiple=True,
    metavar="KIND:MAGNITUDE[@WHERE]",
    help="Inject a known QA defect (repeatable). KIND (unit): misregistration (px), "
    "light_change (fraction), gain (EV), time_offset (s), flicker (fraction), "
    "scene_flicker (fraction), clipping (EV), defocus (px), and the negative controls "
    "light_ramp (EV/s), motion (px/s). WHERE: comma-separated test | reference (camera; "
    "default test), stills | still=N[-M] (1-based still pairs) | video | frames=A-B "
    "(0-based, inclusive); parameters hz=F, phase=DEG (flickers), angle=DEG "
    "(misregistration), shape=gaussian|disc (defocus). No place: every still pair and "
    "frame. E.g. gain:0.3@still=2, flicker:0.05@reference,video,hz=2.3. Recorded in "
    "truth.json defects.",
)
@click.option(
    "--steady-light",
    is_flag=True,
    help="Generated source without its light dims and flashes (claps stay: audio sync "
    "works; brightness-only sync does not).",
)
@progress_option(plural=True)
@reports_errors
def simulate_command(
    source: str, out_dir: Path, ev_offset: float, offset_s: float, drift_ppm: float,
    seed: int, seconds: float | None, size_text: str | None, fps: float,
    splitter_ratio: float, still_pairs: int, defect_texts: tuple[str, ...],
    steady_light: bool, no_progress: bool,
) -> None:  # fmt: skip
    """Record SOURCE with a simulated two-camera beam-splitter rig; write a capture session.

    SOURCE is a movie (audio optional), a folder of frames, an image, or `generated` (our
    own moving textured scene with claps). The session (rig.json, journal.jsonl, files/)
    is what `expokit capture` writes, plus calibration/ (ChArUco board stills of both
    cameras) and truth.json (flip, homography, EV offset, photometric gain, sync offset
    and drift, noise, seed) to check every stage against. --defect injects known QA
    defects into chosen still pairs and frames (truth.json lists each: kind, magnitude,
    camera, pairs, frames, files); docs/simulator.md describes them.

    \b
    expokit simulate generated --out sim/run1
    expokit simulate clip.mp4 --out sim/clip --size 640x360 --drift-ppm 150 --seed 3
    expokit simulate generated --out sim/qa --still-pairs 8 --steady-light \\
        --defect gain:0.3@still=2 --defect misregistration:2@still=5 \\
        --defect scene_flicker:0.05@video
    """
    from expokit.capture.simulate import simulate
    from expokit.capture.simulator import SimulationConfig

    config = SimulationConfig(
        source=source, ev_offset=ev_offset, offset_s=offset_s, drift_ppm=drift_ppm,
        seed=seed, seconds=seconds, size=_size(size_text), fps=fps,
        splitter_ratio=splitter_ratio, still_pairs=still_pairs,
        defects=_defects(defect_texts), steady_light=steady_light,
    )  # fmt: skip
    result = simulate(config, out_dir, progress=not no_progress, log=click.echo)
    truth = result.truth
    click.echo(f"flip        {truth.flip}")
    click.echo(f"ev_offset   {truth.ev_offset:g} (photometric gain {truth.photometric_gain:g})")
    click.echo(f"sync        offset_s {truth.offset_s:+.6f}, drift {truth.drift_ppm:+.3f} ppm")
    click.echo(f"files       {len(result.files)}")
    if truth.defects:
        click.echo(f"defects     {len(truth.defects)} injected (truth.json defects)")
    click.echo(f"wrote       {result.truth_path}")
