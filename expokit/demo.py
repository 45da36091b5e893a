"""The end-to-end demo: from two (simulated) cameras to a trained model, with the answer known.

Everything runs on data expokit ships or generates (no cameras, no downloads):

1. a simulated beam-splitter rig: a fake two-camera rig whose ``[fake]`` table names the
   ``generated`` footage, driven through the normal capture code (board stills, still pairs,
   two video clips with sound; the test camera mirrored, misregistered and 2 EV darker);
2. geometry and sync calibration, each printed beside the simulator's ``truth.json``;
3. MSEC-style multi-EV renders of the shipped synthetic DNGs, the ladder measured;
4. curation: a rig dataset (stills + video frame pairs) and an MSEC dataset, QA report,
   splits, DIME and MSEC exports checked against the peers' loader rules, validate;
5. a short training run of ``uec`` and of ``video`` and their evaluation tables against the
   reference methods, each model with its verdict against the best fair baseline;

and one HTML page (``OUT/index.html``) linking every output.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import click
import numpy as np

from expokit.calibration.boards import BoardSpec
from expokit.calibration.geometry import calibrate_geometry
from expokit.calibration.sync import synchronize
from expokit.calibration.sync_record import write_sync_json
from expokit.capture.commands import shoot
from expokit.capture.defects import as_specs
from expokit.capture.journal import DownloadedEvent, PlannedEvent, read_events
from expokit.capture.rig_config import load_rig_config
from expokit.capture.simulate import simulate
from expokit.capture.simulator import SimulationConfig
from expokit.core.errors import OutputError
from expokit.core.images import read_image
from expokit.curation.build.config import BuildConfig
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.splits import SplitSpec
from expokit.curation.dataset.report import build_report
from expokit.curation.dataset.selection import PairSelection
from expokit.curation.dataset.validate import validate_dataset
from expokit.curation.export.driver import export_dataset
from expokit.curation.export.validate import validate_export
from expokit.curation.rendering.config import OutputFormat, RenderConfig
from expokit.curation.rendering.render import RenderSummary, render_batch
from expokit.curation.truth import compare_to_truth, format_checks, load_truth, rows_against_truth
from expokit.models.evaluate import (
    EvalConfig,
    evaluate,
    format_table,
    reference_mode_for,
    write_results,
)
from expokit.models.train import recipe, train


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


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (defaults: under 5 minutes on 2 CPU cores).

    Attributes
    ----------
    size
        Simulated camera frames, ``(width, height)`` px (the board needs >= 256x192).
    clip_seconds, fps
        Length (s) and rate (frames/s) of each simulated video clip.
    clips, still_pairs
        Video clips and still pairs the simulated rig shoots.
    offset_s
        The test body's start offset (``sync.json`` convention), s.
    uec_steps, video_steps
        Training steps of the two short runs.
    seed
        Seed of the simulation and of training.
    """

    size: tuple[int, int] = (256, 192)
    clip_seconds: float = 4.0
    fps: float = 12.0
    clips: int = 2
    still_pairs: int = 3
    offset_s: float = 0.37
    uec_steps: int = 150
    video_steps: int = 40
    seed: int = 0


@dataclass
class DemoResult:
    """What the demo produced: ``ok`` when every stage met its known answer."""

    out: Path
    ok: bool = True
    stages: list[tuple[str, bool, str]] = field(default_factory=list)
    links: list[tuple[str, str, Path]] = field(default_factory=list)
    truth: list[Any] = field(default_factory=list)
    tables: dict[str, str] = field(default_factory=dict)
    #: per model: its verdict against the best fair baseline (:func:`model_verdict`)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    index: Path | None = None

    def stage(self, name: str, ok: bool, figure: str) -> None:
        ok = bool(ok)  # numpy comparisons give numpy bools
        self.stages.append((name, ok, figure))
        self.ok = self.ok and ok
        click.secho(f"  {'ok ' if ok else 'BAD'} {figure}", fg=None if ok else "red")

    def link(self, section: str, label: str, path: Path) -> None:
        self.links.append((section, label, path))


SIMULATED_RIG = """
backend = "fake"
output_root = "{root}"
ev_offset = -2.0

[roles.reference]
serial = "SIM-REF"
settings = {{ shutter = "1/125", aperture = "8", iso = "100" }}

[roles.test]
serial = "SIM-TST"
settings = {{ aperture = "8", iso = "100" }}

[fake]
source = "generated"
cameras = [{{ serial = "SIM-REF", model = "Fake Nikon D750" }},
           {{ serial = "SIM-TST", model = "Fake Canon EOS 5D", vendor = "canon" }}]

[fake.simulation]
offset_s = {offset}
drift_ppm = 0.0
seed = {seed}
scene_seed = {scene}
size = [{width}, {height}]
fps = {fps}
"""

BOARD = {"kind": "charuco", "columns": 7, "rows": 5, "square_size": 0.04, "marker_size": 0.028}


def _figure(value: Any) -> str:
    """A measured or true value as a short text (floats to 4 significant digits)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _title(text: str) -> None:
    click.secho(text, bold=True)


def _session_files(session: Path) -> dict[str, list[tuple[Path, Path]]]:
    """``{kind: [(reference file, test file), ...]}`` of a capture session, in shot order."""
    events, _ = read_events(session / "journal.jsonl")
    kinds = {e.index: e.kind for e in events if isinstance(e, PlannedEvent)}
    files: dict[int, dict[str, Path]] = {}
    for e in events:
        if isinstance(e, DownloadedEvent):
            files.setdefault(e.index, {})[e.role] = session / "files" / e.file
    out: dict[str, list[tuple[Path, Path]]] = {}
    for index in sorted(files):
        pair = files[index]
        if "reference" in pair and "test" in pair:
            out.setdefault(kinds[index], []).append((pair["reference"], pair["test"]))
    return out


# ----------------------------------------------------------------------------- stage 1
def run_rig(out: Path, config: DemoConfig, result: DemoResult) -> dict[str, Path]:
    """Shoot board stills, still pairs and video clips on the simulated rig."""
    _title("1. Simulated beam-splitter rig (fake backend, generated footage with sound)")

    def rig_for(scene: int) -> Path:
        """The rig's config; ``scene`` changes only what it films (the generated footage)."""
        name = "rig.toml" if scene == config.seed else f"rig_scene{scene}.toml"
        path = out / "rigs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            SIMULATED_RIG.format(
                root=(out / "sessions").as_posix(),
                offset=config.offset_s,
                seed=config.seed,
                scene=scene,
                width=config.size[0],
                height=config.size[1],
                fps=config.fps,
            ),
            encoding="utf-8",
        )
        return path

    rig_file = rig_for(config.seed)
    rig = load_rig_config(rig_file)
    sessions = {
        "calibration": shoot(rig, "calibration", session_name="calibration", progress=False)[0],
        "pairs": shoot(rig, "pair", count=config.still_pairs, session_name="pairs",
                       progress=False)[0],
    }  # fmt: skip
    for clip in range(config.clips):  # one clip per session, each of another scene
        clip_rig = load_rig_config(rig_for(config.seed + clip))
        sessions[f"video{clip + 1}"] = shoot(
            clip_rig,
            "video",
            seconds=config.clip_seconds,
            session_name=f"video{clip + 1}",
            progress=False,
        )[0]
    roots = {name: session.root for name, session in sessions.items()}
    truth = load_truth(roots["video1"])
    files = sum(len(list((root / "files").iterdir())) for root in roots.values())
    click.echo(f"  rig: {rig_file}; sessions in {out / 'sessions'} ({files} files)")
    click.echo(
        f"  truth: flip {truth.flip}, test EV {truth.ev_offset:+g} (gain "
        f"{truth.photometric_gain:g}), offset {truth.offset_s:+.3f} s, drift "
        f"{truth.drift_ppm:g} ppm"
    )
    result.link("1. rig", "rig config (TOML)", rig_file)
    for name, root in roots.items():
        result.link("1. rig", f"session '{name}' (journal.jsonl, truth.json, files/)", root)
    return roots


# ----------------------------------------------------------------------------- stage 2
def run_calibration_stage(
    out: Path, sessions: dict[str, Path], result: DemoResult
) -> tuple[Path, list[Path]]:
    """Geometry from the board stills, sync for every clip; both against the truth."""
    _title("2. Calibrate geometry (ChArUco stills) and sync (audio), beside the truth")
    (board_ref, board_test), *_ = _session_files(sessions["calibration"])["calibration"]
    rig_dir = out / "rig"
    calibrate_geometry([board_ref], [board_test], rig_dir, BoardSpec(**BOARD))  # type: ignore[arg-type]
    calibration = rig_dir / "rig_calibration.json"
    videos = sorted(name for name in sessions if name.startswith("video"))
    sync_files = []
    for name in videos:
        ((ref_movie, test_movie),) = _session_files(sessions[name])["video"]
        sync = synchronize(ref_movie, test_movie)
        sync_files.append(write_sync_json(sync, out / "sync" / f"{name}_sync.json"))
    checks = compare_to_truth(sessions["video1"], calibration, sync_files[0])
    result.truth.extend(checks)
    for line in format_checks(checks).splitlines():
        click.echo(f"  {line}")
    result.stage("calibration", all(c.passed for c in checks),
                 f"geometry and sync: {sum(c.passed for c in checks)}/{len(checks)} checks "
                 "pass against truth.json")  # fmt: skip
    result.link("2. calibration", "rig_calibration.json", calibration)
    for png in sorted(rig_dir.glob("*.png")):
        result.link("2. calibration", f"QA image {png.name}", png)
    for path in sync_files:
        result.link("2. calibration", path.name, path)
    return calibration, sync_files


# ----------------------------------------------------------------------------- stage 3
def run_renders(
    out: Path, workers: int, progress: bool, result: DemoResult
) -> tuple[RenderSummary, RenderSummary]:
    """MSEC renders and 16-bit linear sequences of the shipped DNGs; the ladder measured."""
    raws = sorted(demo_raw_dir().glob("*.dng"))
    _title(f"3. MSEC-style multi-EV renders of the {len(raws)} shipped synthetic DNGs")
    msec = render_batch(
        raws, out / "renders" / "msec", RenderConfig(layout="msec"), workers=workers,
        progress=progress,
    )  # fmt: skip
    sequence = render_batch(
        raws, out / "renders" / "sequence",
        RenderConfig(formats=(OutputFormat.JPG, OutputFormat.TIFF16_LINEAR)),
        workers=workers, progress=progress,
    )  # fmt: skip
    worst = max(abs(m - ev) for _, ev, m in measured_ev_ratios(sequence))
    result.stage("renders", msec.ok and sequence.ok and worst < 0.02,
                 f"{msec.rendered + msec.skipped} RAWs x 5 EVs; measured EV ladder within "
                 f"{worst:.4f} EV of the requested one (target < 0.02)")  # fmt: skip
    result.link("3. renders", "MSEC renders", msec.out_dir)
    result.link("3. renders", "sequence renders (JPEG + 16-bit linear TIFF)", sequence.out_dir)
    return msec, sequence


# ----------------------------------------------------------------------------- stage 4
def run_datasets(
    out: Path,
    sessions: dict[str, Path],
    calibration: Path,
    sync_files: list[Path],
    msec: RenderSummary,
    workers: int,
    progress: bool,
    result: DemoResult,
) -> tuple[Path, Path]:
    """The rig dataset (stills + video) and the MSEC dataset, with reports and exports."""
    _title("4. Curate: rig dataset (stills + video) and MSEC dataset, QA, exports, validate")
    rig_data = out / "datasets" / "rig"
    videos = sorted(name for name in sessions if name.startswith("video"))
    clips = [f"{sessions[name].name}-0001" for name in videos]  # <session>-<shot index>
    lists = {"train": tuple(clips[:-1]), "test": tuple(clips[-1:])}
    built = build_dataset(
        [sessions["pairs"], *(sessions[name] for name in videos)], rig_data,
        BuildConfig(splits=SplitSpec(lists=lists, default_split="train")),
        rig_calibration=calibration, sync_files=sync_files, workers=workers, progress=progress,
    )  # fmt: skip
    for text, problem in built.report():
        click.secho(f"  {text}", fg="red" if problem else None)
    checks = [
        c for c in compare_to_truth(sessions["video1"], dataset_root=rig_data)
        if c.stage.startswith(("build", "photometric", "frame"))
    ]  # fmt: skip
    result.truth.extend(checks)
    for check in checks:
        click.echo(f"  {check.stage}: {_figure(check.measured)} (truth {_figure(check.truth)}, "
                   f"{check.tolerance})"
                   f" {'PASS' if check.passed else 'FAIL'}")  # fmt: skip
    msec_data = out / "datasets" / "msec"
    msec_built = build_dataset([msec.out_dir], msec_data, workers=workers, progress=progress)
    ok = built.ok and msec_built.ok and all(c.passed for c in checks)
    for name, root in (("rig", rig_data), ("msec", msec_data)):
        report = build_report(root, progress=progress)
        problems = validate_dataset(root).errors
        ok = ok and not problems
        result.link("4. datasets", f"{name} dataset QA report", report)
        result.link("4. datasets", f"{name} dataset root (meta/info.json, manifest.parquet)", root)
        click.echo(f"  {name} dataset: {root}; QA report {report}; "
                   f"validate: {len(problems)} errors")  # fmt: skip
    for name, root, layout in (("DIME", rig_data, "dime"), ("MSEC", msec_data, "msec")):
        target = out / "exports" / layout
        # DIME has no validation folder: val clips go to test
        exported = export_dataset(root, target, layout, progress=progress, dime_val="test")
        checked = validate_export(target)
        ok = ok and exported.ok and not checked.errors
        click.echo(f"  {name} export: {target} ({len(exported.files)} files); peer-convention "
                   f"check and validate: {len(checked.errors)} errors, "
                   f"{len(checked.warnings)} warnings")  # fmt: skip
        result.link("4. exports", f"{name} export ({layout} layout)", target)
    result.stage(
        "curation",
        ok,
        "datasets built, QA reports written, exports pass the peers' loader checks"
        if ok
        else "a dataset or an export has problems (see above)",
    )
    return rig_data, msec_data


#: What the demo's QA check injects (``expokit simulate --defect`` syntax, docs/qa.md):
#: still pair -> the defect, and the flag that must catch it.
QA_CHECK_DEFECTS: tuple[tuple[str, str], ...] = (
    ("misregistration:2.5@still=2", "misaligned"),
    ("light_change:0.3@still=4", "gain_outlier"),
    ("defocus:3@still=6", "defocus"),
)
#: Flags that state facts of the footage (clipping), not faults: never false positives.
FACT_FLAGS = ("clipped_input", "clipped_target")


def run_qa_check(out: Path, workers: int, progress: bool, result: DemoResult) -> Path:
    """A simulated session with known defects in three of its eight still pairs, built as a
    lab builds a session: every injected pair must carry its flag, and no clean pair any
    (clipping aside). The exports then leave the flagged pairs out with one option."""
    _title("4b. QA flags against injected truth (a session with known defects)")
    session = out / "sessions" / "qa-check"
    config = SimulationConfig(
        source="generated", seconds=2.0, still_pairs=8, seed=11, steady_light=True,
        defects=as_specs(d for d, _ in QA_CHECK_DEFECTS),
    )  # fmt: skip
    simulate(config, session)
    files = _session_files(session)
    (board_ref, board_test), *_ = files["calibration"]
    rig_dir = out / "rig-qa-check"
    calibrate_geometry([board_ref], [board_test], rig_dir, BoardSpec(**BOARD))  # type: ignore[arg-type]
    ((ref_movie, test_movie),) = files["video"]
    sync = write_sync_json(synchronize(ref_movie, test_movie), out / "sync" / "qa-check.json")
    data = out / "datasets" / "qa-check"
    built = build_dataset(
        [session], data, rig_calibration=rig_dir / "rig_calibration.json", sync_files=[sync],
        workers=workers, progress=progress,
    )  # fmt: skip
    rows = rows_against_truth(data, [session])
    caught, false = 0, 0
    for row in sorted((r for r in rows if r.still is not None), key=lambda r: r.still or 0):
        raised = [f for f in row.flags if f not in FACT_FLAGS]
        if row.defects:
            injected = ", ".join(f"{d['kind']} {d['magnitude']:g} {d['unit']}" for d in row.defects)
            hit = set(row.expected()) <= set(row.flags)
            caught += hit
            click.echo(f"  still {row.still}: injected {injected}; flags {', '.join(row.flags)}"
                       f" {'CAUGHT' if hit else 'MISSED'}")  # fmt: skip
        elif raised:
            false += 1
            click.echo(f"  still {row.still}: clean but flagged {', '.join(raised)} (FALSE)")
    clean = sum(1 for r in rows if r.clean)
    video_false = sum(
        1 for r in rows if r.clean and r.still is None and set(r.flags) - set(FACT_FLAGS)
    )
    click.echo(f"  clean pairs: {clean} ({clean - false - video_false} without a flag; video "
               f"frames included)")  # fmt: skip
    flags = ",".join(f for _, f in QA_CHECK_DEFECTS)
    exported = export_dataset(
        data, out / "exports" / "qa-check-clean", "sequences", progress=progress,
        selection=PairSelection.parse(flags),
    )  # fmt: skip
    click.echo(f"  curate export --exclude-flags {flags}: {exported.rows_exported} of "
               f"{exported.rows_total} pairs exported")  # fmt: skip
    ok = built.ok and caught == len(QA_CHECK_DEFECTS) and false == 0 and video_false == 0
    ok = ok and exported.ok and exported.rows_exported == exported.rows_total - caught
    result.stage("qa flags", ok,
                 f"{caught}/{len(QA_CHECK_DEFECTS)} injected defects caught by their flag, "
                 f"{false + video_false} false flags on {clean} clean pairs")  # fmt: skip
    result.link("4. datasets", "QA check dataset (known defects)", data)
    return data


# ----------------------------------------------------------------------------- stage 5
def model_verdict(name: str, comparison: dict[str, Any], reference: str) -> dict[str, Any]:
    """A model's state against the best fair baseline, from one split's ``comparison`` of an
    evaluation summary: ``state`` ``ok`` (above it), ``BELOW`` (below or level with it) or
    ``UNFAIR`` (the model peeked: no verdict), and the text the demo shows."""
    delta = comparison.get("delta_psnr")
    against = f"{comparison.get('baseline_label')}, reference {reference}"
    if comparison.get("status") == "not-fair" or delta is None:
        state, text = "UNFAIR", f"{name}: no fair comparison ({comparison.get('line')})"
    elif comparison.get("status") == "above":
        state, text = "ok", f"{name}: above fair baseline by {delta:.2f} dB ({against})"
    elif comparison.get("status") == "level":
        state, text = "BELOW", f"{name}: level with fair baseline, not above ({against})"
    else:
        state, text = "BELOW", f"{name}: below fair baseline by {-delta:.2f} dB ({against})"
    return {"model": name, "state": state, "text": text, "delta_psnr": delta,
            "baseline": comparison.get("baseline"), "reference": reference}  # fmt: skip


def run_training(
    out: Path, rig_data: Path, msec_data: Path, config: DemoConfig, progress: bool,
    result: DemoResult,
) -> None:  # fmt: skip
    """Short ``uec`` and ``video`` runs, evaluated against the reference methods.

    Each model is scored with a reference that is not the pair's own target (another test
    scene, or a training scene when the test split has one scene), so the reference-taking
    methods and ``uec`` do not peek, and gets a verdict against the best fair baseline. A
    model below it is shown as ``BELOW``; it does not fail the demo (seconds of training show
    the pipeline, not a model's quality), but the page and ``demo.json`` say so.
    """
    _title("5. Train uec (MSEC dataset) and video (rig dataset) briefly; evaluate")
    runs = (
        ("uec", msec_data, recipe("uec").replace(
            steps=config.uec_steps, ckpt_every=config.uec_steps, split="train")),
        ("video", rig_data, recipe("video").replace(
            steps=config.video_steps, ckpt_every=config.video_steps, crop=64, batch_size=2)),
    )  # fmt: skip
    ok = True
    for name, data, train_config in runs:
        run = out / "runs" / name
        summary = train(
            train_config.replace(data=str(data), out=str(run), seed=config.seed,
                                 tensorboard=False),
            progress=progress, echo=lambda _line: None,
        )  # fmt: skip
        click.echo(f"  {name}: {summary.report()[0]}")
        split = "test"
        reference = reference_mode_for(data, split)
        eval_config = EvalConfig(splits=(split,), reference=reference)
        evaluation = evaluate(data, run, eval_config)
        write_results(out / "evaluation" / name, evaluation)
        table = format_table(evaluation.summary)
        result.tables[name] = table
        for line in table.splitlines():
            click.echo(f"    {line}")
        scores = evaluation.summary["splits"][split]
        model = next(k for k, v in evaluation.summary["methods"].items() if v["kind"] == "model")
        ok = ok and np.isfinite(scores[model]["all"]["psnr"])
        verdict = model_verdict(name, evaluation.summary["comparison"][split], reference)
        result.verdicts.append(verdict)
        colour = {"ok": None, "BELOW": "yellow"}.get(verdict["state"], "red")
        click.secho(f"  {verdict['state']:<5} {verdict['text']}", fg=colour)
        result.link("5. training", f"{name} run (config.json, log.csv, checkpoints)", run)
        result.link("5. training", f"{name} evaluation (pairs.csv, summary.json)",
                    out / "evaluation" / name)  # fmt: skip
    click.echo(
        "  (seconds of training on a handful of generated scenes: this shows the pipeline,"
        " not the\n  models' quality; docs/models.md has the measured SICE protocol)"
    )
    states = ", ".join(f"{v['model']} {v['state']}" for v in result.verdicts)
    result.stage("training", ok, f"uec and video trained and evaluated (against the best fair "
                 f"baseline: {states}); tables above")  # fmt: skip


# ----------------------------------------------------------------------------- the page
def write_index(result: DemoResult) -> Path:
    """``OUT/index.html``: every stage's figure, the truth table and links to all outputs."""
    out = result.out

    def href(path: Path) -> str:
        target = path / "index.html" if (path / "index.html").is_file() else path
        return html.escape(target.relative_to(out).as_posix() if target.is_relative_to(out)
                           else target.as_posix())  # fmt: skip

    parts = [
        "<!doctype html><meta charset='utf-8'><title>expokit demo</title>",
        "<style>body{font:14px sans-serif;max-width:1000px;margin:2em auto}td,th{padding:2px 8px;"
        "border-bottom:1px solid #ddd;text-align:left}.bad{color:#b00}img{max-width:300px}</style>",
        f"<h1>expokit demo: {'all stages OK' if result.ok else 'PROBLEMS'}</h1>",
        "<h2>Stages</h2><table><tr><th>stage</th><th>result</th><th>figure</th></tr>",
    ]
    for name, ok, figure in result.stages:
        status = "<td>ok</td>" if ok else "<td class='bad'>PROBLEM</td>"
        parts.append(f"<tr><td>{html.escape(name)}</td>{status}<td>{html.escape(figure)}</td></tr>")
    parts.append(
        "</table><h2>Against the simulator's truth</h2><table><tr><th>stage</th>"
        "<th>measured</th><th>truth</th><th>tolerance</th><th>result</th></tr>"
    )
    for c in result.truth:
        parts.append(f"<tr><td>{html.escape(c.stage)}</td><td>{html.escape(_figure(c.measured))}"
                     f"</td><td>{html.escape(_figure(c.truth))}</td><td>{html.escape(c.tolerance)}</td>"
                     f"<td class='{'' if c.passed else 'bad'}'>{'PASS' if c.passed else 'FAIL'}"
                     "</td></tr>")  # fmt: skip
    parts.append("</table>")
    if result.verdicts:
        parts.append("<h2>Models against the best fair baseline</h2><table>")
        for v in result.verdicts:
            css = "" if v["state"] == "ok" else "bad"
            parts.append(f"<tr><td class='{css}'>{html.escape(v['state'])}</td>"
                         f"<td>{html.escape(v['text'])}</td></tr>")  # fmt: skip
        parts.append("</table>")
    for name, table in result.tables.items():
        parts.append(f"<h2>Evaluation: {html.escape(name)}</h2><pre>{html.escape(table)}</pre>")
    section = None
    for heading, label, path in result.links:
        if heading != section:
            parts.append(("</ul>" if section else "") + f"<h2>{html.escape(heading)}</h2><ul>")
            section = heading
        image = f"<br><img src='{href(path)}'>" if path.suffix == ".png" else ""
        parts.append(f"<li><a href='{href(path)}'>{html.escape(label)}</a> "
                     f"<code>{html.escape(str(path))}</code>{image}</li>")  # fmt: skip
    parts.append("</ul>" if section else "")
    index = out / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


def run_demo(
    out_dir: str | Path,
    workers: int = 1,
    progress: bool = True,
    config: DemoConfig | None = None,
) -> DemoResult:
    """Run the whole demo into ``out_dir`` (which must be new or empty) and return what it
    measured; ``result.ok`` is True when every stage met its known answer.

    Raises
    ------
    OutputError
        ``out_dir`` is a file (or a link) or a folder that is not empty.
    """
    config = config or DemoConfig()
    out = Path(out_dir)
    # Checked before anything is written; a file at --out must not reach iterdir/mkdir,
    # whose OSError would end the demo with a traceback.
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"--out {out} exists and is not a folder; the demo writes a new folder")
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"--out {out} is not empty; the demo writes into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = DemoResult(out)
    sessions = run_rig(out, config, result)
    calibration, sync_files = run_calibration_stage(out, sessions, result)
    msec, _ = run_renders(out, workers, progress, result)
    rig_data, msec_data = run_datasets(
        out, sessions, calibration, sync_files, msec, workers, progress, result
    )
    run_qa_check(out, workers, progress, result)
    run_training(out, rig_data, msec_data, config, progress, result)
    result.index = write_index(result)
    (out / "demo.json").write_text(json.dumps(
        {"ok": result.ok, "seconds": time.perf_counter() - started,
         "stages": [{"stage": n, "ok": k, "figure": f} for n, k, f in result.stages],
         "models": result.verdicts},
        indent=1))  # fmt: skip
    elapsed = time.perf_counter() - started
    click.secho(f"demo finished {'OK' if result.ok else 'WITH PROBLEMS'} in {elapsed:.0f} s",
                fg="green" if result.ok else "red")  # fmt: skip
    click.echo(f"open {result.index}")
    return result
