"""Path policy: safe names, paths that stay inside their root, outputs that destroy nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from expokit.core.errors import OutputError
from expokit.core.paths import (
    FolderPlacement,
    PathEscapeError,
    UnsafeNameError,
    check_name,
    check_output_file,
    check_relative,
    is_safe_name,
    output_folder_placement,
    resolve_inside,
    safe_component,
    symlinks_leaving,
)
from expokit.core.roots import claim_root


@pytest.mark.parametrize("name", ["train", "test", "a0001-jmac_DSC1459", "scene.01", "S", "0"])
def test_safe_names(name: str) -> None:
    assert check_name(name, "split") == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "../../evil", "a/b", "a\\b", "/abs", ".hidden", "-x", "_x", "a b", "a\x00b",
     "x" * 129, "tést", 5, None, "a\nb"],
)  # fmt: skip
def test_unsafe_names_are_refused_with_what_and_where(name: object) -> None:
    assert not is_safe_name(name)
    with pytest.raises(UnsafeNameError, match=r"split name .* in --split-fractions is not allowed"):
        check_name(name, "split name", where="--split-fractions")


def test_safe_component_makes_any_text_safe() -> None:
    assert safe_component("../../etc/passwd") == "etc-passwd"
    assert safe_component("My Scene #1") == "My-Scene-1"
    assert safe_component("...") == "x"
    assert is_safe_name(safe_component("a" * 300))


@pytest.mark.parametrize(
    "value", ["../x", "a/../../x", "/etc/passwd", "C:/x", "a\\b", "a\x00b", ""]
)
def test_relative_paths_that_leave_are_refused(value: str) -> None:
    with pytest.raises(PathEscapeError):
        check_relative(value)


def test_resolve_inside_follows_links_only_within_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "images").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("x")
    (root / "images" / "a.png").write_bytes(b"a")
    (root / "images" / "inner.png").symlink_to(root / "images" / "a.png")
    (root / "images" / "leak.png").symlink_to(outside / "secret.txt")
    (root / "linked_scene").symlink_to(outside, target_is_directory=True)

    assert resolve_inside(root, "images/a.png") == root.resolve() / "images" / "a.png"
    assert resolve_inside(root, "images/inner.png").name == "inner.png"
    assert resolve_inside(root, "images/not-yet.png").name == "not-yet.png"  # need not exist
    with pytest.raises(PathEscapeError, match="outside"):
        resolve_inside(root, "images/leak.png")
    with pytest.raises(PathEscapeError, match="outside"):
        resolve_inside(root, "linked_scene/new.png")  # writing into a linked folder
    with pytest.raises(PathEscapeError):
        resolve_inside(root, "../outside/secret.txt")
    leaving = symlinks_leaving(root)
    assert [p.name for p in leaving] == ["leak.png", "linked_scene"]


def test_output_file_guard(tmp_path: Path) -> None:
    video = tmp_path / "a.mp4"
    video.write_bytes(b"movie")
    with pytest.raises(OutputError, match="one of this command's inputs"):
        check_output_file(video, inputs=[video], what="--out")
    alias = tmp_path / "alias.mp4"
    os.link(video, alias)
    with pytest.raises(OutputError, match="one of this command's inputs"):
        check_output_file(alias, inputs=[video])

    dataset = claim_root(tmp_path / "ds", "dataset")
    (dataset / "manifest.parquet").write_bytes(b"PAR1")
    with pytest.raises(OutputError, match=r"a file of the expokit folder .*manifest.parquet"):
        check_output_file(dataset / "manifest.parquet")
    with pytest.raises(OutputError, match="images/"):
        check_output_file(dataset / "images" / "s" / "x.png")
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(dataset)
    # A new report file inside the dataset root is fine; so is an earlier own output.
    assert check_output_file(dataset / "manifest.csv") == dataset / "manifest.csv"
    notes = tmp_path / "notes.txt"
    notes.write_text("a person's notes")
    with pytest.raises(OutputError, match="not an earlier output"):
        check_output_file(notes)
    assert check_output_file(notes, is_own_output=lambda p: True) == notes
    assert video.read_bytes() == b"movie" and notes.read_text() == "a person's notes"


def test_output_folder_placement_resolves_links(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(root)
    assert output_folder_placement(root, root) == FolderPlacement("same")
    assert output_folder_placement(link, root) == FolderPlacement("same")
    inside = output_folder_placement(link / "images" / "x", root)
    assert inside.relation == "inside" and inside.inside is not None
    assert inside.inside.parts[0] == "images"
    assert output_folder_placement(tmp_path, root) == FolderPlacement("holds")
    assert output_folder_placement(tmp_path / "elsewhere", root) == FolderPlacement("apart")
