"""Dataset format v1: version checks, the upgrade command, path safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expokit.curation.build.upgrade import CONVERTERS, upgrade_dataset
from expokit.curation.dataset.format import (
    FORMAT_VERSION,
    INFO_FILE,
    DatasetError,
    check_relative_path,
    load_dataset,
    new_info,
    write_dataset,
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
    write_dataset(root, new_info(), [row])  # type: ignore[arg-type]
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
