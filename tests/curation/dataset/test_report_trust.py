"""The report never writes through links, into a dataset's data, or beside a running report.

Issue 9: a ``report/thumbs`` symlink made ``curate report`` overwrite the link target's files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from expokit.cli.curate_tools import register
from expokit.core.lock import RootInUseError, RootLock
from expokit.curation.dataset.format import load_dataset
from expokit.curation.dataset.report import MARKER, ReportError, build_report
from tests.curation.conftest_tools import Spec, make_dataset

SMALL = Spec(
    stills={"beach": "train", "lab": "test"},
    evs=(-1.0, 0.0),
    clips=(("street", "c01", 3, "train", -1.0),),
    masks=False,
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report-trust") / "ds"
    make_dataset(root, SMALL)
    build_report(root, progress=False)  # an earlier report in ROOT/report
    return root


@pytest.fixture
def root(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ds"
    shutil.copytree(pristine, copy, symlinks=True)
    return copy


def _victim(tmp_path: Path) -> Path:
    folder = tmp_path / "victim"
    folder.mkdir()
    for name in ("00000_in.jpg", "ev.png", "index.html"):
        (folder / name).write_text("precious")
    return folder


@pytest.mark.parametrize("child", ["thumbs", "fig"])
def test_a_linked_report_subfolder_is_refused(root: Path, tmp_path: Path, child: str) -> None:
    victim = _victim(tmp_path)
    shutil.rmtree(root / "report" / child)
    (root / "report" / child).symlink_to(victim)
    with pytest.raises(ReportError, match=rf"symbolic links that leave it \({child}\)"):
        build_report(root, progress=False)
    assert all(p.read_text() == "precious" for p in victim.iterdir())
    assert sorted(p.name for p in victim.iterdir()) == ["00000_in.jpg", "ev.png", "index.html"]
    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(group, ["report", str(root), "--no-progress"])
    assert result.exit_code == 1 and "symbolic links that leave it" in result.output
    assert "Traceback" not in result.output


def test_a_linked_report_folder_is_refused(root: Path, tmp_path: Path) -> None:
    victim = _victim(tmp_path)
    (victim / MARKER).write_text("looks like a report")
    link = tmp_path / "rep"
    link.symlink_to(victim)
    with pytest.raises(ReportError, match="is a symbolic link"):
        build_report(root, link, progress=False)
    assert (victim / "index.html").read_text() == "precious"


def test_report_folder_inside_the_data_is_refused(root: Path) -> None:
    with pytest.raises(ReportError, match=r"inside the data of the expokit folder .*\(images/\)"):
        build_report(root, root / "images" / "qa", progress=False)
    assert not (root / "images" / "qa").exists()
    with pytest.raises(ReportError, match="is the dataset root"):
        build_report(root, root, progress=False)


def test_a_running_report_locks_its_folder(root: Path) -> None:
    before = (root / "report" / "index.html").read_bytes()
    expected = r"in use by pid \d+ \(expokit curate report"
    with (
        RootLock(root / "report", "expokit curate report"),
        pytest.raises(RootInUseError, match=expected),
    ):
        build_report(root, progress=False)
    assert (root / "report" / "index.html").read_bytes() == before
    assert build_report(root, progress=False).is_file()  # released: runs again


def test_image_linked_out_of_the_dataset_is_not_shown(root: Path, tmp_path: Path) -> None:
    frame = load_dataset(root).manifest
    rel = str(frame.loc[0, "input_path"])
    outside = tmp_path / "outside.png"
    shutil.copy(root / rel, outside)
    (root / rel).unlink()
    (root / rel).symlink_to(outside)
    index = build_report(root, tmp_path / "rep", progress=False)
    html = index.read_text()
    assert f"{rel} links outside the dataset" in html
    assert "1 pair(s) have images the report could not read" in html
    # the row got no thumbnails; every other pair did
    thumbs = sorted(p.name for p in (tmp_path / "rep" / "thumbs").iterdir())
    assert not [t for t in thumbs if t.startswith("00000_")]
    assert len(thumbs) == 4 * (len(frame) - 1)
