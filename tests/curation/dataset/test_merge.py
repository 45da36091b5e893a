"""``curate merge``: datasets merged into a new root that validates, splits kept by scene."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from expokit.cli.curate_tools import register
from expokit.curation.dataset.format import INFO_FILE, load_dataset
from expokit.curation.dataset.merge import MergeError, merge_datasets
from expokit.curation.dataset.validate import validate_dataset
from tests.curation.conftest_tools import Spec, make_dataset

LAB_SPEC = Spec(
    stills={"roof": "train", "cellar": "test"},
    clips=(("alley", "c01", 5, "val", -1.0),),
)


def _cli(*args: str) -> tuple[int, str]:
    group = click.Group("curate")
    register(group)
    result = CliRunner().invoke(group, ["merge", *args, "--no-progress"])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("merge")
    make_dataset(base / "home")
    make_dataset(base / "lab", LAB_SPEC)
    return base / "home", base / "lab"


def _scene_splits(root: Path) -> dict[str, set[str]]:
    frame = load_dataset(root).manifest
    return {str(s): set(map(str, g["split"])) for s, g in frame.groupby("scene_id")}


def test_merge_validates_counts_add_up_and_splits_stay_disjoint(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    home, lab = inputs
    out = tmp_path / "merged"
    code, output = _cli(str(home), str(lab), "--out", str(out))
    assert code == 0, output
    merged, first, second = load_dataset(out), load_dataset(home), load_dataset(lab)
    assert len(merged.manifest) == len(first.manifest) + len(second.manifest)
    assert f"merge: {len(merged.manifest)} pairs" in output
    scenes = _scene_splits(out)
    assert scenes == {**_scene_splits(home), **_scene_splits(lab)}  # each scene keeps its split
    assert all(len(splits) == 1 for splits in scenes.values())
    report = validate_dataset(out, progress=False)
    assert report.ok, [str(p) for p in report.problems]
    info = json.loads((out / INFO_FILE).read_text())
    assert [s["root"] for s in info["provenance"]["merged_from"]] == [
        str(home.resolve()),
        str(lab.resolve()),
    ]
    assert info["counts"]["pairs"] == len(merged.manifest)
    by_split = first.manifest["split"].value_counts() + second.manifest["split"].value_counts()
    assert info["counts"]["by_split"] == {str(k): int(v) for k, v in by_split.items()}
    # The copies are the inputs' bytes (shared targets copied once).
    row = second.manifest.iloc[0]
    assert (out / row["target_path"]).read_bytes() == (lab / row["target_path"]).read_bytes()


def test_clashing_scene_ids_are_refused_naming_both_roots(
    inputs: tuple[Path, Path], tmp_path: Path
) -> None:
    home, _ = inputs
    twin = tmp_path / "twin"
    make_dataset(twin)
    out = tmp_path / "merged"
    code, output = _cli(str(home), str(twin), "--out", str(out))
    assert code == 1
    assert str(home) in output and str(twin) in output and "--rename-scenes" in output
    assert not (out / INFO_FILE).exists()
    assert len(output.strip().splitlines()) == 1  # one clear line, no traceback


def test_rename_scenes_prefixes_the_folder_name(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    home, _ = inputs
    twin = tmp_path / "twin"
    make_dataset(twin)
    out = tmp_path / "merged"
    summary = merge_datasets([home, twin], out, rename_scenes=True, progress=False)
    frame = load_dataset(out).manifest
    assert summary.pairs == len(frame) == 2 * len(load_dataset(home).manifest)
    assert {"home-beach_01", "twin-beach_01"} <= set(frame["scene_id"])
    assert all(p.startswith(("home-", "twin-")) for p in frame["pair_id"])
    assert all(p.startswith(("images/home-", "images/twin-")) for p in frame["input_path"])
    assert validate_dataset(out, progress=False).ok


def test_a_changed_file_leaves_no_half_dataset(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    home, _ = inputs
    broken = tmp_path / "broken"
    make_dataset(broken, LAB_SPEC)
    victim = broken / load_dataset(broken).manifest["input_path"].iloc[-1]
    victim.write_bytes(victim.read_bytes() + b"x")
    out = tmp_path / "merged"
    with pytest.raises(MergeError, match="SHA-256 differs"):
        merge_datasets([home, broken], out, progress=False)
    assert not (out / INFO_FILE).exists() and not (out / "images").exists()
    with pytest.raises(MergeError, match="at least two"):
        merge_datasets([home], tmp_path / "one", progress=False)
    with pytest.raises(MergeError, match="given twice"):
        merge_datasets([home, home], tmp_path / "two", progress=False)
