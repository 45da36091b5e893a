from pathlib import Path

import pytest

from expokit.core.errors import ExpokitError
from expokit.curation.rendering.config import OutputFormat
from expokit.curation.rendering.render_layout import assign_names, gt_relpath, output_relpath


def test_msec_names_have_one_underscore_with_unique_part_first() -> None:
    names = assign_names([Path("/a/IMG_0001.CR2"), Path("/a/IMG_0002.CR2")], "msec")
    assert sorted(names.values()) == ["IMG-0001_CR2", "IMG-0002_CR2"]
    for name in names.values():
        assert name.count("_") == 1
        # UEC's key: file name minus its last two "_" fields must stay unique per scene.
        stem = f"{name}_N1.5"
        assert stem.rsplit("_", 2)[0] == name.split("_")[0]


def test_colliding_stems_get_parent_folder() -> None:
    names = assign_names([Path("/x/day1/IMG_1.NEF"), Path("/x/day2/IMG_1.NEF")], "sequence")
    assert set(names.values()) == {"day1-IMG-1", "day2-IMG-1"}


def test_msec_prefix_names_are_safe_thanks_to_tag() -> None:
    names = assign_names([Path("/a/s1.dng"), Path("/a/s10.dng")], "msec")
    assert set(names.values()) == {"s1_DNG", "s10_DNG"}


def test_unresolvable_collision() -> None:
    with pytest.raises(ExpokitError, match="distinct"):
        assign_names([Path("/a.dng"), Path("/a.DNG")], "sequence")


def test_paths() -> None:
    assert output_relpath("s_DNG", -1.5, OutputFormat.JPG, "msec") == "INPUT_IMAGES/s_DNG_N1.5.JPG"
    assert gt_relpath("s_DNG", "msec") == "GT_IMAGES/s_DNG.jpg"
    assert gt_relpath("s", "sequence") is None
    assert output_relpath("s", 1, OutputFormat.TIFF16_LINEAR, "sequence") == "s/s_P1.lin16.tif"
