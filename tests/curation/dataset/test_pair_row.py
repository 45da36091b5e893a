"""PairRow: the manifest row as a typed record (fields, types, round trip, clear errors)."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest

from expokit.curation.dataset.format import MANIFEST_COLUMNS, manifest_frame
from expokit.curation.dataset.pair_row import (
    ASSEMBLY_COLUMNS,
    REQUIRED_VALUES,
    PairRow,
    PairRowError,
)

_TYPES = {"string": str, "Int64": int, "Float64": float}


def _row(**changes: Any) -> dict[str, Any]:
    """A full manifest row: every column, plausible values."""
    values: dict[str, Any] = {}
    for name, (dtype, _, _) in MANIFEST_COLUMNS.items():
        values[name] = {"string": f"{name}-value", "Int64": 3, "Float64": 0.25}[dtype]
    values.update(pair_id="s1/-/ev-1", scene_id="s1", input_path="images/s1/a_input.png")
    values.update(target_path="images/s1/s1_target.png", qa_flags="", split="train")
    values.update(changes)
    return values


def test_fields_are_the_manifest_columns_in_order() -> None:
    assert [f.name for f in dataclasses.fields(PairRow)] == list(MANIFEST_COLUMNS)


def test_field_types_follow_the_column_dtypes() -> None:
    hints = {f.name: f.type for f in dataclasses.fields(PairRow)}
    for name, (dtype, _, _) in MANIFEST_COLUMNS.items():
        python_type = _TYPES[dtype].__name__
        wanted = python_type if name in REQUIRED_VALUES else f"{python_type} | None"
        assert hints[name] == wanted, name


def test_only_assembly_and_video_columns_have_defaults() -> None:
    defaults = [f.name for f in dataclasses.fields(PairRow) if f.default is None]
    assert defaults == ["target_change", *ASSEMBLY_COLUMNS]
    assert set(ASSEMBLY_COLUMNS) <= set(MANIFEST_COLUMNS)


def test_round_trip_keeps_values_and_their_json() -> None:
    data = _row(input_iso=100, psnr_db=math.inf, ssim=math.nan, clip_id=None, mask_path=None)
    row = PairRow.from_dict(data, "test row")
    assert isinstance(row.input_iso, int)  # an integer ISO stays one: same JSON
    back = row.to_dict()
    assert list(back) == list(MANIFEST_COLUMNS)
    assert json.dumps(back) == json.dumps(data)
    assert json.dumps(PairRow.from_dict(back, "again").to_dict()) == json.dumps(data)
    assert row.ssim is not None and math.isnan(row.ssim)  # NaN figures are kept


def test_assembly_columns_may_be_absent_and_unknown_keys_are_ignored() -> None:
    data = {k: v for k, v in _row().items() if k not in ASSEMBLY_COLUMNS and k != "target_change"}
    row = PairRow.from_dict({**data, "_frame_w": 640, "extra": 1}, "record row")
    assert row.split is None and row.qa_flags is None and row.target_change is None
    frame = manifest_frame([row.to_dict()])
    assert list(frame.columns) == list(MANIFEST_COLUMNS) and frame["split"].isna().all()


def test_numpy_scalars_become_python_values() -> None:
    row = PairRow.from_dict(_row(width=np.int64(64), psnr_db=np.float32(30.5)), "frame row")
    assert type(row.width) is int and type(row.psnr_db) is float and row.psnr_db == 30.5


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ({"valid_w": "12"}, "valid_w", "expected an integer or null, got a string"),
        ({"valid_w": 12.0}, "valid_w", "expected an integer or null, got float"),
        ({"psnr_db": "high"}, "psnr_db", "expected a number or null, got a string"),
        ({"psnr_db": True}, "psnr_db", "expected a number or null, got a boolean"),
        ({"source": 3}, "source", "expected a string or null, got int"),
        ({"scene_id": None}, "scene_id", "expected a value, got null"),
        ({"pair_id": None}, "pair_id", "expected a value, got null"),
    ],
)
def test_a_wrong_value_names_where_and_the_field(
    change: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(PairRowError) as info:
        PairRow.from_dict(_row(**change), "manifest.parquet row 4")
    message = str(info.value)
    assert message.startswith(f"manifest.parquet row 4: field {field!r}: {problem}"), message
    assert info.value.field == field and "\n" not in message


def test_a_missing_column_is_named() -> None:
    data = _row()
    del data["homography"]
    with pytest.raises(PairRowError, match=r"^rec rows\[0\]: field 'homography': missing$"):
        PairRow.from_dict(data, "rec rows[0]")


def test_not_an_object() -> None:
    with pytest.raises(PairRowError, match="expected a JSON object, got a JSON array"):
        PairRow.from_dict([1, 2], "rec rows[1]")  # type: ignore[arg-type]
