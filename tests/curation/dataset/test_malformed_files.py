"""Malformed dataset-side files get one-line errors naming the file and the field (issue 12):
``meta/info.json`` (one typed reader used by load, validate and upgrade), manifest paths and
homographies, render manifests, build configs and images whose header claims a huge size."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from expokit.cli import cli
from expokit.core.errors import InputFileError
from expokit.core.images import MAX_IMAGE_PIXELS, decode_image, header_size, read_image
from expokit.curation.build.config import BuildConfig, BuildConfigError
from expokit.curation.build.upgrade import upgrade_dataset
from expokit.curation.dataset.format import (
    INFO_FILE,
    MANIFEST_FILE,
    DatasetError,
    load_dataset,
    read_info,
)
from expokit.curation.dataset.validate import homography_problem, validate_dataset
from expokit.curation.rendering.render_manifest import read_render_manifest, render_manifest_frame


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _assert_one_line_error(result: Result, *needles: str) -> str:
    """Non-zero exit, no traceback, no Python exception escaping; the error names ``needles``."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if needles[0] in line]
    assert errors, result.output
    for needle in needles:
        assert needle in errors[-1], errors[-1]
    return errors[-1]


def _rewrite_info(root: Path, data: Any) -> Path:
    path = root / INFO_FILE
    path.write_text(json.dumps(data))
    return path


def _info(root: Path) -> dict[str, Any]:
    data = json.loads((root / INFO_FILE).read_text())
    assert isinstance(data, dict)
    return data


# --------------------------------------------------------------------------- meta/info.json

#: case -> (how to change info.json, text the error must hold besides the file name)
INFO_CASES = {
    "array": (lambda info: [info], "got an array"),
    "schema-string": (lambda info: {**info, "schema": "x"}, "field 'schema'"),
    "format-version-true": (
        lambda info: {**info, "format_version": True},
        "field 'format_version'",
    ),
    "coco": (lambda info: {**info, "format": "coco"}, "field 'format' is 'coco'"),
    "columns-list": (
        lambda info: {**info, "schema": {"columns": ["pair_id"]}},
        "field 'schema.columns'",
    ),
    "templates-number": (
        lambda info: {**info, "path_templates": {"input": 5}},
        "field 'path_templates.input'",
    ),
    "threshold-text": (
        lambda info: {**info, "qa_thresholds": {"min_psnr_db": "high"}},
        "field 'qa_thresholds.min_psnr_db'",
    ),
    "name-number": (lambda info: {**info, "name": 7}, "field 'name'"),
}

COMMANDS = {
    "validate": lambda root, tmp: ["curate", "validate", str(root), "--no-progress"],
    "report": lambda root, tmp: ["curate", "report", str(root), "--out", str(tmp / "report")],
    "export": lambda root, tmp: [
        "curate",
        "export",
        str(root),
        "--layout",
        "sequences",
        "--out",
        str(tmp / "export"),
    ],
    "csv": lambda root, tmp: ["curate", "csv", str(root)],
    "card": lambda root, tmp: ["curate", "card", str(root)],
    "upgrade": lambda root, tmp: ["curate", "upgrade", str(root)],
}


@pytest.mark.parametrize("case", sorted(INFO_CASES))
def test_malformed_info_is_refused_by_the_reader(root: Path, case: str) -> None:
    mutate, expected = INFO_CASES[case]
    path = _rewrite_info(root, mutate(_info(root)))
    with pytest.raises(DatasetError) as caught:
        read_info(root)
    message = str(caught.value)
    assert message.startswith(f"{path}:") and expected in message
    with pytest.raises(DatasetError, match=r"expected|not an integer|not 'expokit-dataset'"):
        load_dataset(root)
    report = validate_dataset(root)
    assert not report.ok
    assert [(p.code, p.file) for p in report.problems] == [("info", INFO_FILE)]
    assert expected in report.problems[0].message


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", ["array", "schema-string", "format-version-true"])
def test_malformed_info_every_command_one_line_error(
    root: Path, tmp_path: Path, case: str, command: str
) -> None:
    mutate, expected = INFO_CASES[case]
    path = _rewrite_info(root, mutate(_info(root)))
    result = _invoke(*COMMANDS[command](root, tmp_path))
    _assert_one_line_error(result, str(path), expected)


def test_upgrade_does_not_call_another_format_already_v1(root: Path) -> None:
    path = _rewrite_info(root, {**_info(root), "format": "coco"})
    with pytest.raises(DatasetError, match="field 'format' is 'coco'"):
        upgrade_dataset(root)
    result = _invoke("curate", "upgrade", str(root))
    line = _assert_one_line_error(result, str(path), "'coco'")
    assert "already" not in result.output and "already" not in line


def test_upgrade_says_already_current_for_a_good_dataset(root: Path) -> None:
    assert upgrade_dataset(root) == [f"{root} is already format v2; nothing to do"]


def test_valid_info_reads_typed(root: Path) -> None:
    info = read_info(root)
    assert (info.format, info.format_version) == ("expokit-dataset", 2)
    assert info.declared_dtypes["input_ev"] == "Float64"
    assert info.path_templates["input"].startswith("images/")
    assert info.unknown_keys == () and info.to_json() == _info(root)
    dataset = load_dataset(root)
    assert dataset.info == info and dataset.info.declared_dtypes == info.declared_dtypes


def test_info_version_ladder_keeps_its_hints(root: Path) -> None:
    _rewrite_info(root, {**_info(root), "format_version": 0})
    with pytest.raises(DatasetError, match="expokit curate upgrade"):
        read_info(root)
    _rewrite_info(root, {**_info(root), "format_version": 3})
    with pytest.raises(DatasetError, match="upgrade expokit"):
        read_info(root)


# --------------------------------------------------------------------------- manifest


def _edit_manifest(root: Path, column: str, value: Any) -> None:
    frame = pd.read_parquet(root / MANIFEST_FILE)
    frame[column] = frame[column].astype(object)
    frame.loc[0, column] = value
    frame.to_parquet(root / MANIFEST_FILE, index=False)


def test_nul_byte_in_a_manifest_path(root: Path) -> None:
    _edit_manifest(root, "input_path", "images/a\x00b.png")
    report = validate_dataset(root, decode_images=False)
    codes = [(p.code, p.file) for p in report.errors]
    assert codes == [("bad-path", "images/a\x00b.png")], codes
    assert "NUL byte" in report.errors[0].message
    with pytest.raises(DatasetError, match="NUL byte") as caught:
        load_dataset(root)
    assert str(root / MANIFEST_FILE) in str(caught.value)
    result = _invoke("curate", "csv", str(root))
    _assert_one_line_error(result, str(root / MANIFEST_FILE), "NUL byte", "input_path")
    result = _invoke("curate", "validate", str(root), "--no-progress")
    assert result.exit_code == 1 and "bad-path" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[[NaN,0,0],[0,1,0],[0,0,1]]", "NaN or infinite"),
        ("[[Infinity,0,0],[0,1,0],[0,0,1]]", "NaN or infinite"),
        ("[[1,0],[0,1]]", "expected 3x3"),
        ("not json", "not a JSON array"),
    ],
)
def test_bad_homography_fails_validate(root: Path, value: str, expected: str) -> None:
    _edit_manifest(root, "homography", value)
    report = validate_dataset(root, decode_images=False, check_hashes=False)
    assert [p.code for p in report.errors] == ["bad-homography"]
    problem = report.errors[0]
    assert expected in problem.message and problem.file == MANIFEST_FILE
    assert problem.pair_id == str(pd.read_parquet(root / MANIFEST_FILE)["pair_id"].iloc[0])
    result = _invoke("curate", "validate", str(root), "--no-progress")
    assert result.exit_code == 1 and "bad-homography" in result.output


def test_homography_problem_accepts_a_finite_matrix() -> None:
    assert homography_problem(json.dumps(np.eye(3).tolist())) is None


# --------------------------------------------------------------------------- render manifest


def _render_manifest(folder: Path, ev: Any) -> Path:
    row = {
        "name": "scene", "raw_path": "/x/scene.dng", "raw_sha256": "0" * 64, "ev": 0.0,
        "role": "input", "output_path": "scene_0.png", "output_format": "png", "width": 8,
        "height": 8, "bits": 8, "status": "ok", "transfer": "srgb",
    }  # fmt: skip
    frame = render_manifest_frame([row]).astype(object)
    frame.loc[0, "ev"] = ev
    frame = frame.astype({"ev": "string"})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "render_params.json").write_text("{}")  # marks a render output folder
    path = folder / "manifest.parquet"
    frame.to_parquet(path, index=False)
    return path


def test_render_manifest_with_text_ev(tmp_path: Path) -> None:
    path = _render_manifest(tmp_path / "render", "abc")
    with pytest.raises(ValueError, match="column 'ev': 'abc' is not a number") as caught:
        read_render_manifest(path)
    assert str(caught.value).startswith(f"{path}: row 0")


def test_curate_build_of_a_render_folder_with_text_ev(tmp_path: Path) -> None:
    from expokit.curation.build.sources import detect_kind

    path = _render_manifest(tmp_path / "render", "abc")
    assert detect_kind(path.parent) == "render"
    result = _invoke(
        "curate", "build", str(path.parent), "--out", str(tmp_path / "ds"), "--no-progress"
    )
    line = _assert_one_line_error(result, str(path), "'ev'", "'abc'")
    assert line.count(str(path)) == 1


# --------------------------------------------------------------------------- build config


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"splits": "nope"}, "build parameter splits: expected a table, got 'nope'"),
        ({"target_rank": 1.5}, "target_rank: expected an integer or null, got 1.5"),
        ({"splits": {"fractions": "abc"}}, "splits.fractions: expected a table"),
        ({"splits": {"bogus": 1}}, "splits: unknown key(s) bogus"),
        ({"splits": {"fractions": {"train": "most"}}}, "splits.fractions.train: expected"),
        ({"splits": {"lists": {"train": "a"}}}, "splits.lists.train: expected a list"),
        ({"splits": {"salt": 3}}, "splits.salt: expected a string"),
    ],
)
def test_build_config_wrong_types(tmp_path: Path, data: dict[str, Any], expected: str) -> None:
    with pytest.raises(BuildConfigError) as caught:
        BuildConfig.from_dict(data)
    assert expected in str(caught.value)
    config = tmp_path / "build.json"
    config.write_text(json.dumps(data))
    source = tmp_path / "src"
    source.mkdir()
    result = _invoke(
        "curate", "build", str(source), "--out", str(tmp_path / "ds"), "--config", str(config)
    )
    _assert_one_line_error(result, str(config), expected)


def test_build_config_splits_round_trip() -> None:
    config = BuildConfig()
    assert BuildConfig.from_dict({"splits": config.splits.to_dict()}).splits == config.splits


# --------------------------------------------------------------------------- huge image header


def _png_claiming(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_header_size_png_and_jpeg() -> None:
    assert header_size(_png_claiming(50000, 40000)) == (50000, 40000)
    ok, jpeg = cv2.imencode(".jpg", np.zeros((12, 34, 3), np.uint8))
    assert ok and header_size(jpeg.tobytes()) == (34, 12)
    assert header_size(b"GIF89a") is None


def test_huge_png_header_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(_png_claiming(50000, 50000))
    assert MAX_IMAGE_PIXELS < 50000 * 50000
    with pytest.raises(InputFileError) as caught:
        read_image(path)
    assert caught.value.path == path and "50000x50000" in str(caught.value)
    with pytest.raises(InputFileError, match="50000x50000"):
        decode_image(path.read_bytes(), path)


def test_undecodable_bytes_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputFileError, match="not a readable image") as caught:
        read_image(path)
    assert caught.value.path == path


def test_curate_build_names_a_huge_png(tmp_path: Path) -> None:
    source = tmp_path / "seqs" / "scene_a"
    source.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 200, (48, 64, 3), dtype=np.uint8)
    for index, gain in enumerate((0.5, 1.0, 1.5), start=1):
        image = np.clip(base.astype(np.float64) * gain, 0, 255).astype(np.uint8)
        assert cv2.imwrite(str(source / f"{index}.png"), image)
    huge = source / "1.png"
    huge.write_bytes(_png_claiming(50000, 50000))
    result = _invoke(
        "curate", "build", str(source.parent), "--out", str(tmp_path / "ds"), "--no-progress"
    )
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code != 0, result.output
    assert str(huge) in result.output and "50000x50000" in result.output


def test_validate_reports_a_huge_png_as_corrupt(root: Path) -> None:
    rel = str(pd.read_parquet(root / MANIFEST_FILE)["input_path"].iloc[0])
    (root / rel).write_bytes(_png_claiming(50000, 50000))
    report = validate_dataset(root, check_hashes=False)
    problems = [p for p in report.errors if p.code == "corrupt-image"]
    assert [p.file for p in problems] == [rel] and "50000x50000" in problems[0].message


def test_calibrate_geometry_names_a_huge_png(tmp_path: Path) -> None:
    reference = tmp_path / "ref.png"
    assert cv2.imwrite(str(reference), np.full((48, 64, 3), 128, np.uint8))
    huge = tmp_path / "test.png"
    huge.write_bytes(_png_claiming(50000, 50000))
    result = _invoke(
        "calibrate", "geometry", str(reference), str(huge), "--out", str(tmp_path / "rig")
    )
    _assert_one_line_error(result, str(huge), "50000x50000")
