"""The registry of expokit's file kinds and their JSON Schemas (``docs/schemas/``).

:data:`ENTRIES` lists each file kind expokit writes and reads back: where it lives, its typed
model, its one writer and its one reader. It sits above the stages (``core`` knows no stage),
so it may name every stage's model; models are imported only when a schema is generated
(``"module:Class"``), so importing this module stays cheap. :func:`generate_docs` renders
``docs/schemas/`` (``scripts/gen_schemas.py`` writes it; ``tests/test_schemas.py`` checks it
is up to date) with :func:`expokit.core.schema.dataclass_schema`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from expokit.core.schema import DRAFT, REGENERATE, SCHEMA_DIR, JsonSchema, dataclass_schema


@dataclass(frozen=True)
class SchemaEntry:
    """One file kind expokit writes and reads back, and its typed model.

    Attributes
    ----------
    kind
        Short name; the schema is ``docs/schemas/<kind>.schema.json``.
    file
        Where the file lives (a path pattern).
    model
        ``"module:Class"`` of the model (imported only when a schema is generated).
    writer, reader
        The one function that writes / reads the file.
    at
        Key of the file's JSON object that holds the model (``None``: the whole file).
    exclude
        Model fields that are not in the file.
    lines
        JSON Lines file: the schema is that of one line.
    strict
        ``additionalProperties: false`` (``False``: the file may hold other keys).
    """

    kind: str
    file: str
    model: str
    writer: str
    reader: str
    at: str | None = None
    exclude: tuple[str, ...] = ()
    lines: bool = False
    strict: bool = True


ENTRIES: dict[str, SchemaEntry] = {
    e.kind: e
    for e in (
        SchemaEntry(
            "rig",
            "SESSION/rig.json",
            "expokit.capture.rig_config:RigConfig",
            "expokit.capture.session:Session (RigConfig.to_dict)",
            "expokit.capture.rig_config:RigConfig.from_dict",
        ),
        SchemaEntry(
            "journal_event",
            "SESSION/journal.jsonl",
            "expokit.capture.journal:JournalEvent",
            "expokit.capture.journal:Journal.append",
            "expokit.capture.journal:parse_event",
            exclude=("line", "data"),
            lines=True,
            strict=False,
        ),
        SchemaEntry(
            "rig_calibration",
            "rig_calibration.json",
            "expokit.calibration.rig_calibration:RigCalibration",
            "expokit.calibration.rig_calibration:write_rig_calibration",
            "expokit.calibration.rig_calibration:read_rig_calibration",
        ),
        SchemaEntry(
            "render_params",
            "RENDER_OUT/render_params.json",
            "expokit.curation.rendering.config:RenderConfig",
            "expokit.curation.rendering.render:render_batch",
            "expokit.curation.build.sources (render source discovery)",
            at="config",
        ),
        SchemaEntry(
            "train_config",
            "RUN/config.json",
            "expokit.models.train:TrainConfig",
            "expokit.models.train:train",
            "expokit.models.train:TrainConfig (from_dict)",
            at="config",
        ),
        SchemaEntry(
            "sync",
            "sync.json",
            "expokit.calibration.sync_record:SyncFile",
            "expokit.calibration.sync_record:write_sync_json",
            "expokit.calibration.sync_record:read_sync_record",
        ),
        SchemaEntry(
            "info",
            "DATASET/meta/info.json",
            "expokit.curation.dataset.format:InfoFile",
            "expokit.curation.dataset.format:write_info (DatasetInfo.to_json)",
            "expokit.curation.dataset.format:read_info",
        ),
        SchemaEntry(
            "truth",
            "SESSION/truth.json",
            "expokit.capture.simulator.truth_file:TruthFile",
            "expokit.capture.simulator.truth_file:write_truth",
            "expokit.curation.truth:load_truth",
        ),
        SchemaEntry(
            "render_record",
            "RENDER_OUT/.expokit/records/<name>.json",
            "expokit.core.runs:RenderRecord",
            "expokit.core.runs:write_record (from expokit.curation.rendering.render:render_raw)",
            "expokit.core.runs:read_record / load_record",
        ),
        SchemaEntry(
            "build_record",
            "DATASET/.expokit/records/<scene_id>.json",
            "expokit.core.runs:BuildRecord",
            "expokit.core.runs:write_record (from expokit.curation.build.scene:build_scene)",
            "expokit.core.runs:read_record / load_record",
        ),
        SchemaEntry(
            "export",
            "EXPORT_OUT/export.json",
            "expokit.curation.export.record:ExportRecord",
            "expokit.curation.export.record:write_export_record",
            "expokit.curation.export.record:read_export_record",
        ),
        SchemaEntry(
            "checkpoint_meta",
            "RUN/checkpoints/step_<N>/meta.json",
            "expokit.models.checkpoint:CheckpointMeta",
            "expokit.models.checkpoint:CheckpointMeta.write",
            "expokit.models.checkpoint:read_meta",
            exclude=("extra",),
            strict=False,
        ),
        SchemaEntry(
            "infer_record",
            "INFER_OUT/.expokit/infer.json",
            "expokit.models.infer:InferRecord",
            "expokit.models.infer:write_infer_record",
            "expokit.models.infer:read_infer_record",
        ),
        SchemaEntry(
            "run_sidecar",
            "RENDER_OUT/runs/<run_id>.json",
            "expokit.core.runs:RunSidecar",
            "expokit.core.runs:write_run_sidecar",
            "expokit.core.runs:read_run_sidecar",
        ),
    )
}

#: ``{file kind: "module:Class"}`` of every registered model (lazy import strings).
SCHEMAS: dict[str, str] = {kind: entry.model for kind, entry in ENTRIES.items()}


def load_model(ref: str) -> type | None:
    """The class named by ``"module:Class"``, or ``None`` when it does not exist (yet)."""
    module_name, _, qualname = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError:
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
        return None
    return obj


def entry_schema(entry: SchemaEntry) -> JsonSchema | None:
    """Schema of a registered file kind; ``None`` when its model does not exist."""
    cls = load_model(entry.model)
    if cls is None:
        return None
    schema_id = f"{SCHEMA_DIR}/{entry.kind}.schema.json"
    if entry.at is None:
        return dataclass_schema(
            cls, exclude=entry.exclude, strict=entry.strict, schema_id=schema_id, title=entry.file
        )
    inner = dataclass_schema(cls, exclude=entry.exclude, strict=entry.strict)
    defs = inner.pop("$defs", {})
    for key in ("$schema", "title"):
        inner.pop(key, None)
    defs[cls.__name__] = inner
    return {
        "$schema": DRAFT,
        "$id": schema_id,
        "title": entry.file,
        "description": f"The file's '{entry.at}' object is a {cls.__name__}.",
        "type": "object",
        "properties": {entry.at: {"$ref": f"#/$defs/{cls.__name__}"}},
        "required": [entry.at],
        "$defs": dict(sorted(defs.items())),
    }


def _dumps(schema: JsonSchema) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generate_docs(entries: Mapping[str, SchemaEntry] | None = None) -> dict[str, str]:
    """``{file name: text}`` of ``docs/schemas/``: one ``<kind>.schema.json`` per registered
    model that exists, and ``README.md`` (file, writer, reader, model; skipped kinds)."""
    entries = ENTRIES if entries is None else entries
    out: dict[str, str] = {}
    rows: list[str] = []
    skipped: list[str] = []
    for kind, entry in entries.items():
        schema = entry_schema(entry)
        if schema is None:
            skipped.append(f"- `{kind}` ({entry.file}): model `{entry.model}` does not exist yet")
            continue
        name = f"{kind}.schema.json"
        out[name] = _dumps(schema)
        where = f" (key `{entry.at}`)" if entry.at else (" (one line)" if entry.lines else "")
        rows.append(
            f"| `{entry.file}`{where} | `{entry.writer}` | `{entry.reader}` | "
            f"`{entry.model}` | [{name}]({name}) |"
        )
    lines = [
        "# JSON Schemas of expokit's files",
        "",
        f"Generated by `{REGENERATE}` from the typed models (`expokit/schemas.py`);",
        "`tests/test_schemas.py` fails when these files are stale. Do not edit by hand.",
        "",
        "| File | Writer | Reader | Model | Schema |",
        "| --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]
    if skipped:
        lines += ["## Not described yet", "", *skipped, ""]
    out["README.md"] = "\n".join(lines)
    return out
