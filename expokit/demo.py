"""The end-to-end demo on data shipped with expokit (synthetic DNGs made by our own code).

Today: render the shipped RAWs to an MSEC-style multi-EV set and a sequence set with 16-bit
linear TIFFs, then measure every rendered EV against the requested one. Later stages extend
this into the full capture -> calibration -> curation -> training pipeline.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click
import numpy as np

from expokit.capture.rig_config import RigConfig
from expokit.core.images import read_image
from expokit.curation.render import RenderSummary, render_batch
from expokit.curation.render_config import OutputFormat, RenderConfig


def demo_raw_dir() -> Path:
    """Folder of the demo DNGs shipped inside the package (``curation/data/demo_raw``)."""
    return Path(str(resources.files("expokit.curation") / "data" / "demo_raw"))


def measured_ev_ratios(summary: RenderSummary) -> list[tuple[str, float, float]]:
    """``(name, requested EV, measured EV)`` from the 16-bit linear TIFFs of a render.

    Measured EV is ``log2(mean(EV e) / mean(EV 0))`` over pixels unclipped in both.
    """
    import pandas as pd

    frame = pd.read_parquet(summary.manifest_path)
    linear = frame[(frame["status"] == "ok") & (frame["output_format"] == "tiff16-linear")]
    results = []
    for name, group in linear.groupby("name"):
        images = {
            float(ev): read_image(summary.out_dir / str(relpath))
            for ev, relpath in zip(group["ev"].tolist(), group["output_path"].tolist(), strict=True)
        }
        base = images[0.0].astype(np.float64)
        for ev, image in sorted(images.items()):
            scaled = image.astype(np.float64)
            valid = (base > 64) & (base < 65000) & (scaled > 64) & (scaled < 65000)
            ratio = scaled[valid].mean() / base[valid].mean()
            results.append((str(name), ev, float(np.log2(ratio))))
    return results


def _report(title: str, summary: RenderSummary) -> None:
    click.secho(title, bold=True)
    for text, problem in summary.report():
        click.secho(f"  {text}", fg="red" if problem else None)


def demo_rig(out: Path) -> RigConfig:
    """A two-camera fake rig (Nikon-like reference, Canon-like test 2 EV under) shooting
    synthetic RAWs whose EXIF carries the exposure actually used."""
    cameras = [
        {"serial": "DEMO-REF", "model": "Fake Nikon D750", "vendor": "nikon",
         "latency_s": 0.02, "jitter_s": 0.005, "image_size": [212, 318]},
        {"serial": "DEMO-TST", "model": "Fake Canon EOS 5D", "vendor": "canon",
         "latency_s": 0.03, "jitter_s": 0.005, "image_size": [212, 318]},
    ]  # fmt: skip
    return RigConfig.from_dict(
        {
            "backend": "fake",
            "output_root": str(out / "sessions"),
            "ev_offset": -2.0,
            "roles": {
                "reference": {"serial": "DEMO-REF", "settings": {"shutter": "1/125"}},
                "test": {"serial": "DEMO-TST", "settings": {}},
            },
            "fake": {"cameras": cameras},
        }
    )


def run_capture(out: Path) -> tuple[Path, bool]:
    """Shoot 3 synchronized pairs with the fake rig; return the session folder and success."""
    from expokit.capture.commands import shoot

    session, report = shoot(demo_rig(out), "pair", count=3, progress=False)
    click.secho("0. Capture: 3 synchronized pairs on a fake two-camera rig", bold=True)
    click.echo(f"  session:  {session.root} ({report.files} files, journal.jsonl, rig.json)")
    click.echo(f"  {report.skew_summary()}")
    if report.exif_mismatches:
        click.secho(f"  EXIF mismatches: {report.exif_mismatches}", fg="red")
    return session.root, not report.shots_failed and not report.exif_mismatches


def run_calibration(reference_jpg: Path, out: Path) -> bool:
    """Make a beam-splitter-like test view of ``reference_jpg`` (mirrored, moved by a known
    homography, 2 EV darker, noisy), calibrate it back and compare with the known answer."""
    import cv2

    from expokit.calibration.geometry import calibrate_geometry
    from expokit.calibration.homography import homography_grid_error
    from expokit.core.transfer import srgb_decode, srgb_encode

    reference = read_image(reference_jpg)
    height, width = reference.shape[:2]
    # reference -> test coordinates: a slight rotation, scale and shift, as two bodies have.
    angle = np.deg2rad(1.5)
    ref_to_test = np.array(
        [[1.02 * np.cos(angle), -np.sin(angle), 6.0], [np.sin(angle), 1.02 * np.cos(angle), -4.0],
         [1e-5, 0.0, 1.0]]
    )  # fmt: skip
    warped = cv2.warpPerspective(reference, ref_to_test, (width, height),
                                 borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    darker = srgb_encode(srgb_decode(warped / 255.0) * 2.0**-2) * 255
    noisy = darker + np.random.default_rng(0).normal(0, 2, darker.shape)
    test = cv2.flip(np.clip(noisy, 0, 255).astype(np.uint8), 1)  # the splitter's mirror
    views = out / "calibration_views"
    views.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(views / "reference.png"), reference)
    cv2.imwrite(str(views / "test.png"), test)
    calib = calibrate_geometry([views / "reference.png"], [views / "test.png"], out / "rig")
    mean, worst = homography_grid_error(calib.homography, np.linalg.inv(ref_to_test),
                                        (width, height))  # fmt: skip
    click.secho("4. Calibrate a mirrored, 2 EV darker test view against the reference", bold=True)
    click.echo(f"  flip found: {calib.flip.value} (true: horizontal)")
    click.echo(f"  homography error vs the known one: mean {mean:.2f} px, max {worst:.2f} px")
    click.echo(f"  rig calibration: {out / 'rig' / 'rig_calibration.json'} (+ QA images)")
    return calib.flip.value == "horizontal" and mean < 1.0


def run_curation(render_dir: Path, out: Path, workers: int, progress: bool) -> bool:
    """Build a paired dataset from a render folder, then report, export and validate it."""
    from expokit.curation.build import build_dataset
    from expokit.curation.export import export_dataset
    from expokit.curation.report import build_report
    from expokit.curation.validate import validate_dataset

    dataset = out / "dataset"
    built = build_dataset([render_dir], dataset, workers=workers, progress=progress)
    click.secho("5. Curate: paired dataset (format v1) from the MSEC renders", bold=True)
    for text, problem in built.report():
        click.secho(f"  {text}", fg="red" if problem else None)
    report = build_report(dataset, progress=progress)
    click.echo(f"  QA report: {report}")
    exported = export_dataset(dataset, out / "export_msec", "msec", progress=progress)
    click.echo(f"  MSEC export: {out / 'export_msec'} ({len(exported.files)} files)")
    checked = validate_dataset(dataset)
    click.echo(f"  validate: {len(checked.errors)} error(s)")
    return built.ok and exported.ok and not checked.errors


def run_demo(out_dir: str | Path, workers: int = 1, progress: bool = True) -> bool:
    """Run the demo into ``out_dir``; return True when every step succeeded."""
    out = Path(out_dir)
    session_dir, captured = run_capture(out)
    captured_render = render_batch(
        [session_dir / "files"], out / "session_renders", RenderConfig(), workers=workers,
        progress=progress,
    )  # fmt: skip
    _report("   ... and the captured RAW pairs rendered to the MSEC ladder", captured_render)
    raws = sorted(demo_raw_dir().glob("*.dng"))
    click.echo(f"demo RAW files: {len(raws)} synthetic DNGs in {demo_raw_dir()}")
    msec = render_batch(
        raws, out / "msec", RenderConfig(layout="msec"), workers=workers, progress=progress
    )
    _report("1. MSEC-style multi-EV set (EV -1.5, -1, 0, +1, +1.5; GT = EV 0)", msec)
    sequence = render_batch(
        raws,
        out / "sequence",
        RenderConfig(formats=(OutputFormat.JPG, OutputFormat.TIFF16_LINEAR)),
        workers=workers,
        progress=progress,
    )
    _report("2. Per-scene sequences, sRGB JPEG + 16-bit linear TIFF", sequence)
    click.secho("3. Ladder check: measured EV from the linear TIFFs (unclipped pixels)", bold=True)
    worst = 0.0
    for name, ev, measured in measured_ev_ratios(sequence):
        worst = max(worst, abs(measured - ev))
        click.echo(f"  {name:24s} EV {ev:+5.2f}  measured {measured:+.4f}")
    click.echo(f"  largest deviation: {worst:.4f} EV (target < 0.02)")
    texture = sequence.out_dir / "synthetic-texture" / "synthetic-texture_0.jpg"
    calibrated = run_calibration(texture, out)
    curated = run_curation(msec.out_dir, out, workers, progress)
    ok = captured and captured_render.ok and msec.ok and sequence.ok and worst < 0.02
    ok = ok and calibrated and curated
    click.secho("demo finished " + ("OK" if ok else "WITH PROBLEMS"), fg="green" if ok else "red")
    return ok
