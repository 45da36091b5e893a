"""The generated dataset card (``README.md``) and the manifest column table of the docs.

The card is Markdown made from ``meta/info.json`` and the manifest only, so it is always in
step with the data: counts per split, cameras, EV distribution, QA summary, licence and a
citation block. Exports add a section describing the exported layout. ``expokit curate card
ROOT`` rewrites it; do not edit it by hand.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expokit import __version__
from expokit.core.atomic import atomic_write_text
from expokit.curation.dataset.flags import flag_list
from expokit.curation.dataset.format import (
    FORMAT_VERSION,
    MANIFEST_COLUMNS,
    Dataset,
    DatasetInfo,
    load_dataset,
    read_info,
    write_info,
)
from expokit.curation.dataset.selection import selection_counts

if TYPE_CHECKING:
    import pandas as pd

CARD_FILE = "README.md"

#: QA columns summarised in the card and the report, with a short label.
QA_METRICS: dict[str, str] = {
    "psnr_db": "PSNR (dB), exposure-normalised, unclipped",
    "ssim": "SSIM, exposure-normalised, unclipped",
    "alignment_residual_px": "alignment residual (px, median DIS flow)",
    "ecc_correlation": "ECC correlation",
    "photometric_gain": "photometric gain target/input (linear)",
    "clipped_dark_input": "clipped dark, input (fraction)",
    "clipped_bright_input": "clipped bright, input (fraction)",
    "clipped_dark_target": "clipped dark, target (fraction)",
    "clipped_bright_target": "clipped bright, target (fraction)",
    "usable_fraction": "usable fraction (unclipped in both)",
    "focus_ratio": "focus ratio input/target",
    "gain_deviation_ev": "gain vs its group's median (EV)",
    "gain_instability_ev": "gain instability per clip (EV)",
    "target_flicker": "target flicker per clip (detrended)",
}

#: Figures with one value per clip, repeated on its rows (summarised once per clip).
CLIP_METRICS: tuple[str, ...] = ("gain_instability_ev", "target_flicker")

_LAYOUT_HELP = {
    "msec": (
        "`training|validation|testing/INPUT_IMAGES/<name>_<EV>.JPG` with EV tokens "
        "`N1.5 N1 0 P1 P1.5`, `GT_IMAGES/<name>.jpg`, and `testing/expert_c_testing_set/` "
        "holding the test GT again. Names are `<unique>_EXPK` (one `_`), as the MSEC, UEC "
        "and RECNet loaders parse them."
    ),
    "dime": (
        "`np/{train,test}/{LQ,GT}/<clip>/<frame>.png`: LQ and GT of a clip hold the same "
        "sorted frame names (DIME pairs by sorted position); `dime_clips.csv` maps clip "
        "numbers to scene and clip ids."
    ),
    "sequences": (
        "`<split>/<scene>/<rank>_<EV>[_target].<ext>`: one folder per scene with its "
        "exposures sorted from dark to bright; `sequences.csv` lists EV, role and source of "
        "each file."
    ),
}


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0 or 0.01 <= abs(value) < 1e5:
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return f"{value:.2e}"


def _escape(text: str) -> str:
    """Markdown table cell text: ``<name>`` would vanish as an HTML tag, ``|`` split the cell."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")


def column_table() -> str:
    """Markdown table of every manifest column (dtype, unit, meaning) from MANIFEST_COLUMNS.

    ``docs/dataset_format.md`` embeds this table verbatim; ``tests/test_docs.py`` checks it.
    """
    return _table(
        ("column", "dtype", "unit", "meaning"),
        (
            (f"`{name}`", f"`{dtype}`", unit or "–", _escape(meaning))
            for name, (dtype, unit, meaning) in MANIFEST_COLUMNS.items()
        ),
    )


def split_counts(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per split (and a ``total`` row): pairs, scenes, clips, flagged and passed pairs."""
    rows: list[dict[str, Any]] = []
    splits = sorted(frame["split"].fillna("(none)").astype(str).unique(), key=_split_order)
    for split in [*splits, "total"]:
        part = frame if split == "total" else frame[frame["split"].fillna("(none)") == split]
        flagged = int(sum(bool(flag_list(v)) for v in part["qa_flags"].tolist()))
        clips = part.dropna(subset=["clip_id"])[["scene_id", "clip_id"]].drop_duplicates()
        rows.append(
            {
                "split": split,
                "pairs": len(part),
                "scenes": int(part["scene_id"].nunique()),
                "clips": len(clips),
                "flagged": flagged,
                "passed": len(part) - flagged,
            }
        )
    return rows


def _split_order(name: str) -> tuple[int, str]:
    known = {"train": 0, "val": 1, "test": 2}
    return (known.get(name, 3), name)


def flag_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many pairs carry each flag, most frequent first."""
    counts: dict[str, int] = {}
    for value in frame["qa_flags"].tolist():
        for flag in flag_list(value):
            counts[flag] = counts.get(flag, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def cameras(info: DatasetInfo) -> list[str]:
    """Camera descriptions recorded in info.json.

    Read from ``provenance.cameras`` (strings or ``{role, make, model, serial}`` mappings),
    from ``camera``/``cameras``/``camera_model`` keys of ``provenance.sources`` entries, and
    from the ``cameras`` of their capture ``sessions`` (``curate build`` records each role's
    body from the session's rig.json: ``reference: Canon EOS R5 (serial 042)``).
    """
    provenance = info.provenance or {}
    found: list[Any] = list(provenance.get("cameras") or [])
    session_cameras: list[str] = []
    for source in info.sources:
        if isinstance(source, Mapping):
            for key in ("camera", "camera_model", "cameras"):
                value = source.get(key)
                if isinstance(value, list):
                    found.extend(value)
                elif value:
                    found.append(value)
            for session in source.get("sessions") or []:
                if isinstance(session, Mapping):
                    session_cameras += [
                        _session_camera(c) for c in session.get("cameras") or [] if c
                    ]
    names: list[str] = []
    for item in found:
        if isinstance(item, Mapping):
            text = " ".join(str(item[k]) for k in ("make", "model") if item.get(k))
            text = text or str(item.get("name", "camera"))
            if item.get("serial"):
                text += f" #{item['serial']}"
            if item.get("role"):
                text += f" ({item['role']})"
        else:
            text = str(item)
        if text not in names:
            names.append(text)
    for text in session_cameras:
        if text not in names:
            names.append(text)
    return names


def _session_camera(camera: Any) -> str:
    """``role: make model (serial S)`` of one camera a capture session recorded (what it
    has of those; a string as it is)."""
    if not isinstance(camera, Mapping):
        return str(camera)
    make, model = str(camera.get("make") or ""), str(camera.get("model") or "")
    # A model string often already starts with the make ("Canon EOS R5").
    body = model if make and model.lower().startswith(make.lower()) else f"{make} {model}"
    body = body.strip()
    if camera.get("serial"):
        body = f"{body} (serial {camera['serial']})" if body else f"serial {camera['serial']}"
    body = body or "camera"
    return f"{camera['role']}: {body}" if camera.get("role") else body


def uses_ranks(frame: pd.DataFrame) -> bool:
    """True when some pair's EVs are exposure ranks (``ev_basis == "rank"``), not EVs."""
    return "ev_basis" in frame.columns and bool((frame["ev_basis"] == "rank").fillna(False).any())


def exposure_axis_label(frame: pd.DataFrame) -> str:
    """The name of the input-vs-target exposure axis: EVs, or ranks when they are ranks."""
    if uses_ranks(frame):
        return "exposure rank (input − target; not EV)"
    return "input EV − target EV"


def ev_distribution(frame: pd.DataFrame) -> list[tuple[str, int, str]]:
    """(input exposure relative to target, pairs, measured EV), rounded to 0.01.

    The first value is the EV difference, or the rank difference for ``ev_basis: rank``
    rows; the measured EV is ``-log2`` of the pairs' median photometric gain (target /
    input, linear light), what the exposures really differ by. Nulls as ``–``.
    """
    import math

    import pandas as pd

    relative = (frame["input_ev"] - frame["target_ev"]).astype("Float64")
    gains: dict[float | None, list[float]] = {}
    for value, gain in zip(relative.tolist(), frame["photometric_gain"].tolist(), strict=True):
        key: float | None = None if pd.isna(value) else round(float(value), 2) + 0.0
        bucket = gains.setdefault(key, [])
        if not pd.isna(gain) and float(gain) > 0:
            bucket.append(float(gain))
    ordered = sorted(gains, key=lambda k: (k is None, k or 0.0))
    counts: dict[float | None, int] = dict.fromkeys(ordered, 0)
    for value in relative.tolist():
        counts[None if pd.isna(value) else round(float(value), 2) + 0.0] += 1
    out = []
    for key in ordered:
        values = sorted(gains[key])
        measured = f"{-math.log2(values[len(values) // 2]):+.2f}" if values else "–"  # median gain
        out.append(
            ("–" if key is None else "0" if key == 0 else f"{key:+g}", counts[key], measured)
        )
    return out


def metric_summary(frame: pd.DataFrame) -> list[tuple[str, str, str, str, str, int]]:
    """(label, median, 5th, 95th percentile, mean, non-null count) per QA metric."""
    import numpy as np

    rows = []
    for column, label in QA_METRICS.items():
        series = frame[column]
        if column in CLIP_METRICS:  # one value per clip, repeated on its rows
            series = frame.dropna(subset=["clip_id"]).drop_duplicates(["scene_id", "clip_id"])[
                column
            ]
        values = series.dropna().to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            rows.append((label, "–", "–", "–", "–", int(values.size)))
            continue
        p5, p50, p95 = np.percentile(finite, [5, 50, 95])
        rows.append(
            (label, _fmt(p50), _fmt(p5), _fmt(p95), _fmt(float(finite.mean())), int(values.size))
        )
    return rows


def _citation(info: DatasetInfo, name: str) -> str:
    citation = info.citation
    if isinstance(citation, str) and citation.strip():
        return citation.strip()
    if isinstance(citation, Mapping) and citation.get("bibtex"):
        return str(citation["bibtex"]).strip()

    created = str((info.provenance or {}).get("created", ""))[:4]
    year = created if created.isdigit() else str(dt.date.today().year)
    key = "".join(c for c in name.lower() if c.isalnum()) or "dataset"
    authors = citation.get("authors") if isinstance(citation, Mapping) else None
    return "\n".join(
        [
            f"@misc{{{key}{year},",
            f"  title  = {{{name}: a paired exposure-correction dataset}},",
            f"  author = {{{authors or 'TODO: expokit curate card DATASET --citation FILE.bib'}}},",
            f"  year   = {{{year}}},",
            f"  note   = {{Built with expokit {__version__}, dataset format v{FORMAT_VERSION}}}",
            "}",
        ]
    )


def render_card(dataset: Dataset, export: Mapping[str, Any] | None = None) -> str:
    """The dataset card as Markdown.

    Parameters
    ----------
    dataset
        The loaded dataset.
    export
        For a card written into an export: ``layout``, ``rows_total``, ``rows_exported``,
        ``groups_exported``, ``files``, ``issues`` (reason -> count) and ``notes``
        (see :meth:`expokit.curation.export.layouts.ExportSummary.as_card_section`).
    """
    info, frame = dataset.info, dataset.manifest
    name = str(info.name or dataset.root.name)
    out = _header_section(info, name)
    if export is not None:
        out += _export_section(export)
    out += _contents_section(info, frame)
    out += _cameras_section(info)
    out += _exposure_section(frame)
    out += _qa_section(info, frame)
    out += _provenance_section(info)
    out += _licence_section(info)
    out += ["", "## Citation", "", "```bibtex", _citation(info, name), "```", ""]
    return "\n".join(out)


def _header_section(info: DatasetInfo, name: str) -> list[str]:
    out: list[str] = [f"# {name}", ""]
    if info.description:
        out += [str(info.description).strip(), ""]
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    out += [
        f"Generated by expokit {__version__} on {today} from `meta/info.json` and "
        f"`manifest.parquet` (expokit dataset format v{FORMAT_VERSION}). Do not edit: "
        "`expokit curate card ROOT` rewrites this file.",
        "",
    ]
    return out


def _contents_section(info: DatasetInfo, frame: pd.DataFrame) -> list[str]:
    out = ["## Contents", ""]
    out.append(
        _table(
            ("split", "pairs", "scenes", "clips", "passed QA", "flagged"),
            (
                (
                    f"**{r['split']}**" if r["split"] == "total" else r["split"],
                    r["pairs"],
                    r["scenes"],
                    r["clips"],
                    r["passed"],
                    r["flagged"],
                )
                for r in split_counts(frame)
            ),
        )
    )
    sources = frame["source"].dropna().astype(str).value_counts()
    if len(sources):
        out += ["", "Sources: " + ", ".join(f"{k} ({v} pairs)" for k, v in sources.items()) + "."]
    if info.splits:
        out += ["", f"Split spec (by scene, never by row): `{_compact(info.splits)}`."]
    return out


def _cameras_section(info: DatasetInfo) -> list[str]:
    names = cameras(info)
    lines = [f"- {n}" for n in names] if names else ["Not recorded in `meta/info.json`."]
    return ["", "## Cameras", "", *lines]


def _exposure_section(frame: pd.DataFrame) -> list[str]:
    ranks = uses_ranks(frame)
    out = ["", "## Exposure rank distribution" if ranks else "## Exposure (EV) distribution", ""]
    if ranks:
        out += [
            "Some scenes have no EXIF exposure times: their exposures are **ranks** (positions "
            "in the sequence), not EVs. The measured EV column is what the images really "
            "differ by (the median fitted gain).",
            "",
        ]
    distribution = ev_distribution(frame)
    peak = max((n for _, n, _ in distribution), default=1)
    out.append(
        _table(
            (exposure_axis_label(frame), "pairs", "measured EV (median gain)", ""),
            (
                (ev, n, measured, "█" * max(1, round(20 * n / peak)))
                for ev, n, measured in distribution
            ),
        )
    )
    return out


def _qa_section(info: DatasetInfo, frame: pd.DataFrame) -> list[str]:
    out = ["", "## QA summary", ""]
    out.append(_table(("metric", "median", "5 %", "95 %", "mean", "values"), metric_summary(frame)))
    flags = flag_counts(frame)
    out += [""]
    if flags:
        out.append(_table(("flag", "pairs"), flags.items()))
        out += [
            "",
            "Flagged pairs are kept and marked, never dropped; the flags are defined in "
            "expokit's docs/qa.md. `curate export`, `train`, `eval` and the PyTorch datasets "
            "choose pairs the same way:",
            "",
            _table(("option", "keeps", "pairs"), selection_counts(frame)),
        ]
    else:
        out.append("No pair is flagged.")
    if info.qa_thresholds:
        out += ["", f"QA thresholds: `{_compact(info.qa_thresholds)}`."]
    return out


def _provenance_section(info: DatasetInfo) -> list[str]:
    provenance = info.provenance or {}
    out = ["", "## Provenance", ""]
    for key in ("expokit_version", "libraw_version", "rawpy_version", "opencv_version", "created"):
        if provenance.get(key):
            out.append(f"- {key.replace('_', ' ')}: {provenance[key]}")
    if info.sources:
        out.append(f"- sources: {len(info.sources)} (listed in `meta/info.json`)")
    return out


def _licence_section(info: DatasetInfo) -> list[str]:
    return [
        "",
        "## Licence",
        "",
        f"`{info.license}`"
        if info.license
        else "**Not set.** Set it before sharing this dataset: `expokit curate card DATASET "
        "--license SPDX` (an SPDX identifier such as `CC-BY-4.0`).",
    ]


def _export_section(export: Mapping[str, Any]) -> list[str]:
    layout = str(export.get("layout"))
    lines = [
        f"## This export: `{layout}` layout",
        "",
        _LAYOUT_HELP.get(layout, ""),
        "",
        f"{export.get('rows_exported', 0)} of {export.get('rows_total', 0)} manifest rows "
        f"exported as {export.get('groups_exported', 0)} "
        f"{'clips' if layout == 'dime' else 'scenes'} ({export.get('files', 0)} data files). "
        "Every source file was checked against its SHA-256 in the manifest; `export.json` "
        "lists each exported file with its SHA-256.",
        "",
    ]
    issues = export.get("issues") or {}
    if issues:
        lines += [_table(("left out", "rows"), sorted(issues.items())), ""]
    for note in export.get("notes") or []:
        lines.append(f"- {note}")
    if export.get("notes"):
        lines.append("")
    lines += ["The sections below describe the whole source dataset.", ""]
    return lines


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)


def set_card_fields(
    root: str | Path,
    *,
    name: str | None = None,
    license: str | None = None,
    citation: str | None = None,
) -> Path:
    """Set the card fields given (``name``, ``license``: an SPDX identifier, ``citation``:
    text such as a BibTeX entry) in ``ROOT/meta/info.json`` and rewrite the card.

    Fields left ``None`` keep their value. info.json is rewritten atomically
    (:func:`write_info`); the caller holds the dataset's lock. Returns the card's path.
    """
    if (name, license, citation) != (None, None, None):
        info = read_info(root)
        updated = replace(
            info,
            name=info.name if name is None else name,
            license=info.license if license is None else license,
            citation=info.citation if citation is None else citation,
        )
        write_info(root, updated)
    return write_card(root)


def write_card(root: str | Path | Dataset, path: str | Path | None = None) -> Path:
    """Write the card of a dataset to ``path`` (default ``ROOT/README.md``), atomically."""
    dataset = root if isinstance(root, Dataset) else load_dataset(root)
    target = Path(path) if path is not None else dataset.root / CARD_FILE
    atomic_write_text(target, render_card(dataset))
    return target
