"""``expokit curate report|export|validate|csv|card``: look at, check and hand out a dataset.

:func:`register` adds the commands to the ``curate`` group. Heavy libraries (pandas,
OpenCV, matplotlib, Jinja2) are imported inside the commands so ``expokit --help`` stays fast.
Expected failures print one line and exit 1; ``validate`` and ``export`` also exit 1 when any
item has a problem.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from expokit.cli.common import (
    FiniteFloatRange,
    dataset_argument,
    jobs_option,
    out_option,
    progress_option,
    reports_errors,
    selection_options,
)
from expokit.core.paths import check_output_file

if TYPE_CHECKING:
    from expokit.curation.export.layouts import ExportIssue

_EXPORT_LAYOUTS = ("msec", "dime", "sequences", "paired")
_root_argument = dataset_argument()
_progress_option = progress_option()


@click.command("report")
@_root_argument
@out_option("Report folder (default DATASET/report).")
@click.option(
    "--max-thumbnails",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Pairs that get thumbnails (worst first); the table lists every pair.",
)
@click.option(
    "--per-page", type=click.IntRange(min=1), default=48, show_default=True, help="Pairs per page."
)
@jobs_option(default=2, help="Worker processes drawing thumbnails.")
@_progress_option
@reports_errors
def report_command(
    root: Path,
    out_dir: Path | None,
    max_thumbnails: int,
    per_page: int,
    workers: int,
    no_progress: bool,
) -> None:
    """Write the HTML QA report of DATASET (open index.html in a browser)."""
    from expokit.curation.dataset.report import build_report

    index = build_report(
        root,
        out_dir,
        max_thumbnails=max_thumbnails,
        per_page=per_page,
        workers=workers,
        progress=not no_progress,
    )
    click.echo(f"report: {index}")


@click.command("export")
@_root_argument
@click.option(
    "--layout",
    type=click.Choice(_EXPORT_LAYOUTS),
    required=True,
    help="msec: INPUT_IMAGES/GT_IMAGES; dime: np/{train,test}/{LQ,GT}; sequences: per scene.",
)
@out_option("Output folder: new, empty, or an earlier export.", required=True)
@click.option(
    "--jpeg-quality",
    type=click.IntRange(1, 100),
    default=95,
    show_default=True,
    help="JPEG quality of files the layout stores as JPEG (1-100).",
)
@click.option(
    "--dime-val",
    type=click.Choice(["skip", "test"]),
    default="skip",
    show_default=True,
    help="DIME has no validation folder: leave val out, or add it to test.",
)
@click.option(
    "--ev-tolerance",
    type=FiniteFloatRange(min=0),
    default=0.25,
    show_default=True,
    help="msec: largest EV distance to the nearest MSEC token.",
)
@click.option(
    "--rank-map",
    type=click.Choice(["nearest5"]),
    default=None,
    help="msec, sequences: map exposure ranks (no EXIF, ev_basis: rank) to tokens: "
    "nearest5 = the five exposures nearest the target by rank -> N1.5 N1 0 P1 P1.5. "
    "Without it such a dataset is refused.",
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="msec: scenes lacking one of the five inputs are still left out and named, but the "
    "export exits 0.",
)
@selection_options
@_progress_option
@reports_errors
def export_command(
    root: Path,
    layout: str,
    out_dir: Path,
    jpeg_quality: int,
    dime_val: str,
    ev_tolerance: float,
    rank_map: str | None,
    allow_partial: bool,
    exclude_flags: str | None,
    passed_only: bool,
    no_progress: bool,
) -> None:
    """Export DATASET to a folder layout peers' code reads.

    msec: every scene needs all five inputs N1.5 N1 0 P1 P1.5; the export is checked
    against the peers' loader rules and exits 1 on any problem.
    """
    from expokit.curation.dataset.selection import PairSelection
    from expokit.curation.export.driver import export_dataset

    summary = export_dataset(
        root,
        out_dir,
        layout,
        jpeg_quality=jpeg_quality,
        dime_val=dime_val,
        ev_tolerance=ev_tolerance,
        progress=not no_progress,
        rank_map=rank_map,
        allow_partial=allow_partial,
        selection=PairSelection.parse(exclude_flags, passed_only),
    )
    if not summary.ok:
        # The cause first: EVs with no MSEC token leave scenes incomplete and splits empty,
        # and the errors below follow from them.
        for line in _unrepresentable_ev_causes(summary.skipped):
            click.secho(f"error: {line}", fg="red", err=True)
    for issue in summary.errors:
        click.secho(str(issue), fg="red", err=True)
    for kept in summary.kept:
        click.secho(f"warning: {kept}", fg="yellow", err=True)
    if summary.removed:
        click.echo(f"removed {len(summary.removed)} file(s) of an earlier export", err=True)
    skipped = summary.skipped
    for issue in skipped:
        if issue.reason == "incomplete-scene":
            click.secho(f"warning: {issue}", fg="yellow", err=True)
    if skipped:
        reasons: dict[str, int] = {}
        for issue in skipped:
            reasons[issue.reason] = reasons.get(issue.reason, 0) + 1
        listing = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        click.secho(
            f"warning: {len(skipped)} row(s) skipped ({listing}); see export.json",
            fg="yellow",
            err=True,
        )
    click.echo(
        f"{layout}: {summary.rows_exported} of {summary.rows_total} rows, "
        f"{summary.groups_exported} {'clips' if layout == 'dime' else 'scenes'}, "
        f"{len(summary.files)} files -> {summary.out}"
    )
    if not summary.ok:
        sys.exit(1)


@click.command("validate")
@_root_argument
@click.option("--no-hashes", is_flag=True, help="Skip the SHA-256 comparison (faster).")
@click.option(
    "--no-decode", is_flag=True, help="Do not decode images (no corrupt-file or size checks)."
)
@jobs_option(default=2, help="Worker processes decoding and hashing files.")
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write every problem to this JSON file.",
)
@_progress_option
@reports_errors
def validate_command(
    root: Path,
    no_hashes: bool,
    no_decode: bool,
    workers: int,
    json_path: Path | None,
    no_progress: bool,
) -> None:
    """Check schema, files, SHA-256s, split disjointness and pairing; list every problem.

    DATASET may also be an export folder (it holds export.json): its files are checked against
    export.json and an msec export against the peers' loader rules.
    Exits 1 when any error is found (warnings alone exit 0).
    """
    from expokit.core.atomic import atomic_write_text
    from expokit.curation.dataset.format import INFO_FILE, MANIFEST_FILE
    from expokit.curation.dataset.validate import validate_dataset
    from expokit.curation.export.validate import is_export_folder, validate_export

    if json_path is not None:
        # Checked before the (long) validation: the report may replace only an earlier one.
        check_output_file(
            json_path,
            inputs=(root / MANIFEST_FILE, root / INFO_FILE),
            what="--json file",
            is_own_output=_is_validate_report,
        )
    if is_export_folder(root):
        report = validate_export(root, check_hashes=not no_hashes)
    else:
        report = validate_dataset(
            root,
            check_hashes=not no_hashes,
            decode_images=not no_decode,
            workers=workers,
            progress=not no_progress,
        )
    for problem in sorted(report.problems, key=lambda p: p.severity != "error"):
        colour = "red" if problem.severity == "error" else "yellow"
        click.secho(str(problem), fg=colour, err=problem.severity == "error")
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(report.to_json(), indent=2) + "\n")
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)


@click.command("csv")
@_root_argument
@out_option("CSV file (default DATASET/manifest.csv).", dest="out_path", dir_okay=False)
@reports_errors
def csv_command(root: Path, out_path: Path | None) -> None:
    """Write the manifest of DATASET as CSV.

    An existing file is replaced only when it is an earlier manifest CSV (same header);
    the dataset's own files and inputs are never overwritten.
    """
    from expokit.curation.dataset.format import (
        INFO_FILE,
        MANIFEST_FILE,
        export_csv,
        is_manifest_csv,
        load_dataset,
    )

    target = out_path if out_path is not None else root / "manifest.csv"
    check_output_file(
        target,
        inputs=(root / MANIFEST_FILE, root / INFO_FILE),
        what="--out file",
        is_own_output=is_manifest_csv,
    )
    dataset = load_dataset(root)
    path = export_csv(dataset, target)
    click.echo(f"csv: {path} ({len(dataset.manifest)} rows)")


def _card_text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A card field as given: non-empty text (None: not given, the field is kept)."""
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


def _citation_text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--citation``: the text given, or the text of a ``.bib`` file it names."""
    value = _card_text(ctx, param, value)
    if value is None or not value.lower().endswith(".bib"):
        return value
    try:
        text = Path(value).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise click.BadParameter(f"{value}: {reason}", ctx=ctx, param=param) from None
    return _card_text(ctx, param, text.strip())


@click.command("card")
@_root_argument
@click.option(
    "--name",
    default=None,
    metavar="TEXT",
    callback=_card_text,
    help="Set the dataset's name (info.json name) [default: kept].",
)
@click.option(
    "--license",
    "license_id",
    default=None,
    metavar="SPDX",
    callback=_card_text,
    help="Set the licence, an SPDX identifier such as CC-BY-4.0 [default: kept].",
)
@click.option(
    "--citation",
    default=None,
    metavar="TEXT|FILE.bib",
    callback=_citation_text,
    help="Set how to cite: the text, or a .bib file whose entry is stored [default: kept].",
)
@reports_errors
def card_command(
    root: Path, name: str | None, license_id: str | None, citation: str | None
) -> None:
    """(Re)write the dataset card DATASET/README.md from info.json and the manifest.

    --name, --license and --citation first set those fields of DATASET/meta/info.json.
    """
    from expokit.core.lock import RootLock
    from expokit.curation.dataset.card import set_card_fields
    from expokit.curation.dataset.format import load_dataset

    # Proven a dataset before the lock, which creates .expokit/ in DATASET: a folder that is
    # not a dataset is refused (DatasetError names what is missing) and left untouched.
    load_dataset(root)
    # info.json and README.md are the dataset's files: not while a build rewrites them.
    with RootLock(root, "expokit curate card"):
        path = set_card_fields(root, name=name, license=license_id, citation=citation)
    click.echo(f"card: {path}")


@click.command("upgrade")
@_root_argument
@reports_errors
def upgrade_command(root: Path) -> None:
    """Convert DATASET to the current format version (in place)."""
    from expokit.curation.build.upgrade import upgrade_dataset

    steps = upgrade_dataset(root)
    for step in steps:
        click.echo(step)


def _unrepresentable_ev_causes(skipped: Sequence[ExportIssue]) -> list[str]:
    """Lead lines of a failed export whose inputs have EVs with no MSEC token: each such
    EV distance (with its row count), then what to do; empty when there is none."""
    rows_by_message: dict[str, int] = {}
    for issue in skipped:
        if issue.reason == "ev-not-representable":
            rows_by_message[issue.message] = rows_by_message.get(issue.message, 0) + 1
    if not rows_by_message:
        return []
    causes = [f"{n} row(s): {message}" for message, n in rows_by_message.items()]
    return [
        *causes,
        "render the RAWs on the MSEC ladder (expokit render RAWS -o RENDERS "
        "--ev=-1.5,-1,0,1,1.5, then expokit curate build RENDERS -o DATASET), widen "
        "--ev-tolerance, or export --layout sequences",
    ]


@click.command("merge")
@click.argument(
    "roots",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    metavar="ROOT ROOT [ROOT ...]",
)
@out_option("New folder for the merged dataset.", required=True)
@click.option(
    "--rename-scenes",
    is_flag=True,
    help="Prefix each input's scene and pair ids with its folder name (for inputs that "
    "share scene ids, which are otherwise refused).",
)
@_progress_option
@reports_errors
def merge_command(
    roots: tuple[Path, ...], out_dir: Path, rename_scenes: bool, no_progress: bool
) -> None:
    """Merge two or more datasets into a new dataset at --out.

    Images are copied (SHA-256 checked); every scene keeps its split; scene ids must be
    unique across the inputs (or use --rename-scenes). A failure leaves no half dataset.
    """
    from expokit.curation.dataset.merge import merge_datasets

    summary = merge_datasets(roots, out_dir, rename_scenes=rename_scenes, progress=not no_progress)
    splits = ", ".join(f"{split} {count}" for split, count in sorted(summary.by_split.items()))
    click.echo(
        f"merge: {summary.pairs} pairs, {summary.scenes} scenes ({splits}) from "
        f"{len(summary.sources)} datasets, {summary.files} files -> {summary.out}"
    )


def _is_validate_report(path: Path) -> bool:
    """True when ``path`` holds an earlier ``curate validate --json`` report."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return (
        isinstance(data, dict)
        and {"root", "rows", "files_checked", "ok", "problems"} <= set(data)
        and isinstance(data["problems"], list)
    )


def register(group: click.Group) -> None:
    """Add ``report``, ``export``, ``validate``, ``csv``, ``card``, ``upgrade``, ``merge`` to
    ``group``."""
    commands = (
        report_command, export_command, validate_command, csv_command, card_command,
        upgrade_command, merge_command,
    )  # fmt: skip
    for command in commands:
        group.add_command(command)
