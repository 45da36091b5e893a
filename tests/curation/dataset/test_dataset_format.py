"""Dataset format v1: version checks, the upgrade command, path safety."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from expokit.curation.build.upgrade import CONVERTERS, upgrade_dataset
from expokit.curation.dataset.format import (
    FORMAT_VERSION,
    INFO_FILE,
    DatasetError,
    DatasetInfo,
    check_relative_path,
    load_dataset,
    read_info,
    schema,
    write_dataset,
    write_info,
)


def _tiny(root: Path) -> Path:
    row = {
        "pair_id": "s/0",
        "scene_id": "s",
        "source": "sequences",
        "input_path": "images/s/a.png",
        "target_path": "images/s/b.png",
        "split": "train",
        "qa_flags": "",
    }
    write_dataset(root, DatasetInfo.new(), [row])  # type: ignore[arg-type]
    return root


def _set_version(root: Path, version: object) -> None:
    info = json.loads((root / INFO_FILE).read_text())
    info["format_version"] = version
    (root / INFO_FILE).write_text(json.dumps(info))


def test_older_version_names_version_and_converter(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "d")
    _set_version(root, 0)
    with pytest.raises(DatasetError, match=r"version 0.*expokit curate upgrade"):
        load_dataset(root)
    with pytest.raises(DatasetError, match="no converter from format v0 to v1"):
        upgrade_dataset(root)


def test_newer_version_asks_to_upgrade_expokit(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "d")
    _set_version(root, FORMAT_VERSION + 1)
    with pytest.raises(DatasetError, match=r"version 3.*upgrade expokit"):
        load_dataset(root)
    with pytest.raises(DatasetError, match="newer than this expokit"):
        upgrade_dataset(root)


def test_upgrade_runs_registered_converters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tiny(tmp_path / "d")
    assert "already format v2" in upgrade_dataset(root)[0]
    _set_version(root, 0)

    def v0_to_v2(folder: Path) -> None:
        _set_version(folder, 2)

    # A registered converter runs; the ladder stops at the current version.
    monkeypatch.setitem(CONVERTERS, 0, v0_to_v2)
    monkeypatch.setitem(CONVERTERS, 1, lambda folder: None)
    assert upgrade_dataset(root)[0] == "converted v0 -> v1"
    assert len(load_dataset(root).manifest) == 1


def test_unknown_info_keys_warn(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "d")
    info = json.loads((root / INFO_FILE).read_text())
    info["colour"] = "blue"
    (root / INFO_FILE).write_text(json.dumps(info))
    with pytest.warns(UserWarning, match="unknown keys ignored: colour"):
        load_dataset(root)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x.png", "images/../../x", "C:\\x.png", ""])
def test_unsafe_paths_rejected(bad: str) -> None:
    with pytest.raises(DatasetError):
        check_relative_path(bad, row="r1", column="input_path")


def test_dataset_info_written_then_read_is_equal(tmp_path: Path) -> None:
    info = DatasetInfo.new(name="n", license="CC-BY-4.0", qa_thresholds={"min_ssim": 0.5})
    write_info(tmp_path, info)
    again = read_info(tmp_path)
    assert again == info and again.path == tmp_path / INFO_FILE
    write_info(tmp_path / "copy", again)  # a file read and written again: same bytes
    assert (tmp_path / "copy" / INFO_FILE).read_bytes() == (tmp_path / INFO_FILE).read_bytes()


def test_info_json_bytes_match_the_dict_writer(tmp_path: Path) -> None:
    from dataclasses import replace

    from expokit.core.atomic import atomic_write_json

    info = DatasetInfo.new(splits={"method": "hash"}, qa_thresholds={"min_psnr_db": 20})
    provenance = info.provenance or {}
    # How info.json was written before DatasetInfo: new_info's dict, updated in place.
    old: dict[str, object] = {
        "format": "expokit-dataset",
        "format_version": FORMAT_VERSION,
        "schema": schema(),
        "path_templates": info.path_templates,
        "provenance": provenance,
    }
    old.update(splits={"method": "hash"}, qa_thresholds={"min_psnr_db": 20})
    old["name"] = None  # a key kept from an earlier file, null included
    old["counts"] = {"pairs": 0}
    atomic_write_json(tmp_path / "old.json", old)
    new = replace(info, name=None, counts={"pairs": 0}, keys_read=(*info.to_json(), "name"))
    write_info(tmp_path, new)
    assert (tmp_path / INFO_FILE).read_bytes() == (tmp_path / "old.json").read_bytes()


def test_unknown_info_keys_survive_a_rewrite(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "d")
    info = json.loads((root / INFO_FILE).read_text())
    info = {"colour": "blue", **info, "zz": [1]}
    (root / INFO_FILE).write_text(json.dumps(info))
    read = read_info(root)
    assert read.unknown_keys == ("colour", "zz")
    assert read.to_json() == info


def test_wrong_typed_info_field_names_file_and_field(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "d")
    info = json.loads((root / INFO_FILE).read_text())
    info["license"] = 3
    (root / INFO_FILE).write_text(json.dumps(info))
    with pytest.raises(DatasetError) as raised:
        load_dataset(root)
    message = str(raised.value)
    assert "\n" not in message and str(root / INFO_FILE) in message and "'license'" in message
    good = load_dataset(_tiny(tmp_path / "f"))
    with pytest.raises(DatasetError, match="'license'"):
        write_dataset(tmp_path / "e", replace(good.info, license=3), good.manifest)  # type: ignore[arg-type]
    assert not (tmp_path / "e" / INFO_FILE).exists()
