"""docs/schemas/ is generated from the typed models, and each schema fits a real file."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from expokit.core.schema import DRAFT, REGENERATE, dataclass_schema, field_docs, validate
from expokit.schemas import ENTRIES, SchemaEntry, entry_schema, generate_docs, load_model

DOCS = Path(__file__).resolve().parents[1] / "docs" / "schemas"


def _problems(instance: Any, schema: dict[str, Any]) -> list[str]:
    """Our validator's problems, cross-checked with ``jsonschema`` when it is installed."""
    ours = validate(instance, schema)
    try:
        import jsonschema
    except ImportError:
        return ours
    jsonschema.Draft202012Validator.check_schema(schema)
    theirs = list(jsonschema.Draft202012Validator(schema).iter_errors(instance))
    assert bool(ours) == bool(theirs), (ours, [e.message for e in theirs])
    return ours


# --------------------------------------------------------------------------- docs up to date


def test_docs_are_up_to_date() -> None:
    expected = generate_docs()
    found = {p.name: p.read_text(encoding="utf-8") for p in DOCS.iterdir() if p.is_file()}
    stale = sorted(n for n in expected.keys() | found.keys() if expected.get(n) != found.get(n))
    assert not stale, f"docs/schemas/ is stale ({', '.join(stale)}): run `{REGENERATE}`"


def test_readme_lists_each_generated_schema() -> None:
    docs = generate_docs()
    readme = docs["README.md"]
    for name in docs:
        if name.endswith(".schema.json"):
            assert f"]({name})" in readme
            assert json.loads(docs[name])["$schema"] == DRAFT


def test_a_missing_model_is_skipped_with_a_note() -> None:
    entry = SchemaEntry("ghost", "ghost.json", "expokit.core.nowhere:Ghost", "w", "r")
    other = SchemaEntry("gone", "gone.json", "expokit.core.schema:NoSuchClass", "w", "r")
    assert load_model(entry.model) is None and entry_schema(other) is None
    docs = generate_docs({"ghost": entry, "gone": other})
    assert set(docs) == {"README.md"}
    assert (
        "`ghost` (ghost.json): model `expokit.core.nowhere:Ghost` does not exist"
        in (docs["README.md"])
    )


# --------------------------------------------------------------------------- generator


class Colour(str, enum.Enum):
    """Colours of a thing."""

    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    """A nested record.

    Attributes
    ----------
    size
        Width and height, pixels.
    """

    size: tuple[int, int]


@dataclass
class Outer:
    """An outer record.

    Attributes
    ----------
    name
        What it is called.
    low, high
        The bounds.
    """

    name: str
    low: float
    high: float | None = None
    mode: Literal["a", "b"] = "a"
    colour: Colour = Colour.RED
    evs: tuple[float, ...] = (0.0, 1.0)
    tags: list[str] = field(default_factory=list)
    extra: dict[str, int] = field(default_factory=dict)
    inner: Inner | None = None
    where: Path = Path("out")
    flag: bool = False
    memory: Any = field(default=None, repr=False)


def test_generator_gives_the_expected_schema() -> None:
    schema = dataclass_schema(Outer, exclude=("memory",))
    assert schema["$schema"] == DRAFT and schema["title"] == "Outer"
    assert schema["description"] == "An outer record."
    assert schema["required"] == ["name", "low"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert "memory" not in props
    assert props["name"] == {"type": "string", "description": "What it is called."}
    assert props["low"] == {"type": "number", "description": "The bounds."}
    assert props["high"] == {
        "type": ["number", "null"],
        "description": "The bounds.",
        "default": None,
    }
    assert props["mode"] == {"enum": ["a", "b"], "default": "a"}
    assert props["colour"] == {
        "type": "string",
        "enum": ["red", "blue"],
        "description": "Colours of a thing.",
        "default": "red",
    }
    assert props["evs"] == {"type": "array", "items": {"type": "number"}, "default": [0.0, 1.0]}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}, "default": []}
    assert props["extra"] == {
        "type": "object",
        "additionalProperties": {"type": "integer"},
        "default": {},
    }
    assert props["inner"] == {
        "anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}],
        "default": None,
    }
    assert props["where"] == {"type": "string", "default": "out"}
    assert props["flag"] == {"type": "boolean", "default": False}
    assert schema["$defs"]["Inner"] == {
        "type": "object",
        "description": "A nested record.",
        "properties": {
            "size": {
                "type": "array",
                "prefixItems": [{"type": "integer"}, {"type": "integer"}],
                "minItems": 2,
                "maxItems": 2,
                "items": False,
                "description": "Width and height, pixels.",
            }
        },
        "required": ["size"],
        "additionalProperties": False,
    }


def test_field_docs_read_parameters_sections_too() -> None:
    @dataclass
    class Thing:
        """Summary.

        Parameters
        ----------
        a : int
            First
            line two.

        Notes
        -----
        b
            Not a field doc.
        """

        a: int
        b: int

    assert field_docs(Thing) == {"a": "First line two."}
    assert field_docs(Inner) == {"size": "Width and height, pixels."}


@pytest.mark.parametrize(
    ("instance", "valid"),
    [
        ({"name": "x", "low": 1}, True),
        ({"name": "x", "low": 1.5, "inner": {"size": [3, 4]}, "colour": "blue"}, True),
        ({"name": "x"}, False),  # required field missing
        ({"name": "x", "low": True}, False),  # a bool is not a number
        ({"name": "x", "low": 1, "mode": "c"}, False),  # Literal
        ({"name": "x", "low": 1, "colour": "green"}, False),  # Enum
        ({"name": "x", "low": 1, "inner": {"size": [3]}}, False),  # tuple length
        ({"name": "x", "low": 1, "inner": {"size": [3, 4.5]}}, False),  # tuple item type
        ({"name": "x", "low": 1, "extra": {"k": "v"}}, False),  # dict values
        ({"name": "x", "low": 1, "typo": 1}, False),  # unknown field
        ([1, 2], False),
    ],
)
def test_validator_agrees_with_the_schema(instance: Any, valid: bool) -> None:
    schema = dataclass_schema(Outer, exclude=("memory",))
    assert (not _problems(instance, schema)) == valid


def test_generator_refuses_a_non_dataclass() -> None:
    with pytest.raises(TypeError, match="not a dataclass"):
        dataclass_schema(dict)


# --------------------------------------------------------------------------- real files


def _check_file(kind: str, document: Any) -> None:
    entry = ENTRIES[kind]
    schema = entry_schema(entry)
    if schema is None:
        pytest.skip(f"{entry.model} does not exist yet")
    problems = _problems(document, schema)
    assert not problems, f"{kind}: {problems[:5]}"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from expokit.capture.simulate import simulate
    from expokit.capture.simulator import SimulationConfig

    out = tmp_path_factory.mktemp("schemas") / "session"
    simulate(SimulationConfig(seconds=2.0, still_pairs=1), out)
    return out


def test_rig_json_fits_its_schema(session: Path) -> None:
    _check_file("rig", json.loads((session / "rig.json").read_text(encoding="utf-8")))


def test_journal_lines_fit_their_schema(session: Path) -> None:
    lines = (session / "journal.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 3
    for line in lines:
        _check_file("journal_event", json.loads(line))


def test_render_params_fit_their_schema(chart_dng: Path, tmp_path: Path) -> None:
    from expokit.curation.rendering.config import RenderConfig
    from expokit.curation.rendering.render import render_batch

    config = RenderConfig(evs=(-1.0, 0.0), meter=None)
    summary = render_batch([chart_dng], tmp_path / "out", config, progress=False)
    _check_file("render_params", json.loads(Path(summary.params_path).read_text(encoding="utf-8")))


def test_train_config_fits_its_schema(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from expokit.models.train import train
    from tests.models.test_data import build_sequences
    from tests.models.test_train import tiny

    run = tmp_path / "run"
    train(tiny(build_sequences(tmp_path / "data"), run, steps=1), progress=False, echo=print)
    _check_file("train_config", json.loads((run / "config.json").read_text(encoding="utf-8")))


def test_a_wrong_field_in_a_real_file_is_caught(session: Path) -> None:
    rig = json.loads((session / "rig.json").read_text(encoding="utf-8"))
    schema = entry_schema(ENTRIES["rig"])
    assert schema is not None
    rig["bracket"] = "fast"
    assert any("bracket" in p for p in _problems(rig, schema))


def test_registered_models_are_dataclasses() -> None:
    for entry in ENTRIES.values():
        cls = load_model(entry.model)
        assert cls is None or dataclasses.is_dataclass(cls)


def test_truth_json_fits_its_schema(session: Path) -> None:
    _check_file("truth", json.loads((session / "truth.json").read_text(encoding="utf-8")))


def test_sync_json_fits_its_schema(tmp_path: Path) -> None:
    from expokit.calibration.sync_record import write_sync_json
    from tests.test_records_typed import _sync_result

    copy = tmp_path / "copy.mp4"
    copy.write_bytes(b"video")
    for applied in ([], [copy]):
        path = write_sync_json(_sync_result(), tmp_path / "sync.json", applied=applied)
        _check_file("sync", json.loads(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.test_records_typed import tiny_build

    return tiny_build(tmp_path_factory.mktemp("schemas_build"))


def test_info_json_fits_its_schema(built: Path) -> None:
    _check_file("info", json.loads((built / "meta" / "info.json").read_text(encoding="utf-8")))


def test_build_record_fits_its_schema(built: Path) -> None:
    from expokit.core.runs import RECORDS_DIR, record_files

    files = record_files(built / RECORDS_DIR)
    assert files
    for path in files:
        _check_file("build_record", json.loads(path.read_text(encoding="utf-8")))


def test_render_record_and_run_sidecar_fit_their_schemas(tmp_path: Path) -> None:
    from expokit.core.runs import RECORDS_DIR, RUNS_DIR, record_files
    from tests.test_records_typed import tiny_render

    out = tiny_render(tmp_path)
    (record,) = record_files(out / RECORDS_DIR)
    _check_file("render_record", json.loads(record.read_text(encoding="utf-8")))
    (sidecar,) = sorted((out / RUNS_DIR).glob("*.json"))
    _check_file("run_sidecar", json.loads(sidecar.read_text(encoding="utf-8")))


def test_export_json_fits_its_schema(tmp_path: Path) -> None:
    from expokit.curation.export.driver import export_dataset
    from expokit.curation.export.record import EXPORT_RECORD, read_export_record
    from tests.curation.conftest_tools import Spec, make_dataset

    root = tmp_path / "ds"
    make_dataset(root, Spec(stills={"beach": "train", "lab": "test"}, masks=False))
    for layout in ("sequences", "msec"):
        out = tmp_path / layout
        summary = export_dataset(root, out, layout, progress=False, allow_partial=True)
        document = json.loads((out / EXPORT_RECORD).read_text(encoding="utf-8"))
        _check_file("export", document)
        record = read_export_record(out / EXPORT_RECORD)
        assert record.to_file() == document and record.files == summary.files


def test_a_wrong_field_in_each_new_kind_is_caught(session: Path) -> None:
    truth = json.loads((session / "truth.json").read_text(encoding="utf-8"))
    schema = entry_schema(ENTRIES["truth"])
    assert schema is not None
    truth["photometric_gain"] = "4"
    assert any("photometric_gain" in p for p in _problems(truth, schema))
    sidecar_schema = entry_schema(ENTRIES["run_sidecar"])
    assert sidecar_schema is not None
    assert _problems({"run_id": "x"}, sidecar_schema)  # required fields missing


def test_every_issue_12_kind_is_registered() -> None:
    kinds = {"rig", "journal_event", "rig_calibration", "render_params", "train_config"}
    kinds |= {"sync", "info", "truth", "render_record", "build_record", "run_sidecar"}
    assert kinds <= set(ENTRIES)
    for kind in kinds:
        assert load_model(ENTRIES[kind].model) is not None, kind


def test_checkpoint_meta_and_infer_record_fit_their_schemas(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from expokit.models.checkpoint import META_FILE, CheckpointMeta
    from expokit.models.infer import INFER_RECORD, InferOutput, write_infer_record

    CheckpointMeta("uec", 12, {"feature_size": 8}, {"world_size": 1}).write(tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text(encoding="utf-8"))
    _check_file("checkpoint_meta", meta)
    assert _problems({**meta, "step": "12"}, entry_schema(ENTRIES["checkpoint_meta"]) or {})
    write_infer_record(tmp_path, [InferOutput("a.png", "0" * 64), InferOutput("b.mp4")])
    _check_file("infer_record", json.loads((tmp_path / INFER_RECORD).read_text(encoding="utf-8")))
