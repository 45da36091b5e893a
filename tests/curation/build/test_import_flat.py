"""`curate build --kind flat`: flat folders of `<scene>_<tag>` pairs (MEFB) and EXIF brackets
become scenes without hand-made scene folders; EVs from EXIF or recorded as ranks; bad
patterns and one-file scenes give clear errors; `--kind auto` never picks a flat folder."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from expokit.curation.build.config import BuildConfig, BuildConfigError
from expokit.curation.build.driver import build_dataset
from expokit.curation.build.sources import SourceError, detect_kind, discover
from expokit.curation.dataset.format import load_dataset
from expokit.curation.dataset.validate import validate_dataset
from tests.conftest import shared_path

FLAT = BuildConfig(kind="flat", max_side=64)


def _jpeg(
    path: Path,
    stops: float,
    *,
    exif: bool = True,
    taken: datetime | None = None,
    seed: int = 1,
) -> None:
    """A 64x48 JPEG of a textured scene at ``stops`` EV (1/125 s * 2^stops when ``exif``)."""
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    from expokit.core.synthetic import demo_scene
    from expokit.core.transfer import srgb_encode

    linear = np.clip(demo_scene("texture", 48, 64, seed=seed) * 0.3 * 2.0**stops, 0, 1)
    image = Image.fromarray(np.rint(srgb_encode(linear) * 255).astype(np.uint8))
    data = Image.Exif()
    if exif:
        sub = data.get_ifd(0x8769)
        sub[0x829A] = IFDRational(Fraction((1 / 125) * 2.0**stops).limit_denominator(100000))
        sub[0x829D] = IFDRational(Fraction(8))
        sub[0x8827] = 100
        if taken is not None:
            sub[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")  # DateTimeOriginal
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=95, exif=data)
    path.write_bytes(buffer.getvalue())


def _pairs(folder: Path, *, exif: bool) -> Path:
    """MEFB-like flat pairs: `<scene>_A` under-exposed, `<scene>_B` 6 EV brighter."""
    folder.mkdir(parents=True)
    for seed, scene in enumerate(("Candle", "ICCV_01", "my house")):
        _jpeg(folder / f"{scene}_A.jpg", -3.0, exif=exif, seed=seed)
        _jpeg(folder / f"{scene}_B.jpg", 3.0, exif=exif, seed=seed)
    return folder


def test_flat_pairs_with_exif_build_one_scene_each_with_exif_evs(tmp_path: Path) -> None:
    source = _pairs(tmp_path / "pairs", exif=True)
    summary = build_dataset([source], tmp_path / "ds", FLAT, progress=False, durable=False)
    assert summary.ok, summary.failures
    frame = load_dataset(tmp_path / "ds").manifest
    # One scene per <scene>; "ICCV_01" keeps its inner "_", "my house" is made a safe id.
    assert sorted(frame["scene_id"]) == ["Candle", "ICCV_01", "my-house"]
    assert set(frame["source"]) == {"sequences"}
    # Target = rank (2-1)//2 = 0, the darker _A; the _B input is 6 EV brighter per EXIF.
    assert all(str(p).endswith("_A.jpg") for p in frame["source_target"])
    assert all(str(p).endswith("_B.jpg") for p in frame["source_input"])
    assert frame["input_ev"].tolist() == pytest.approx([6.0] * 3, abs=0.01)
    info = load_dataset(tmp_path / "ds").info.provenance["sources"][0]
    assert info["kind"] == "flat" and info["group_by"] == "pattern"
    assert info["ev_basis"] == ["exif"] and info["rank_scenes"] == []
    assert "(?P<scene>" in info["group_pattern"] and not info.get("notes")


def test_flat_pairs_without_exif_record_rank_basis_and_say_so(tmp_path: Path) -> None:
    source = _pairs(tmp_path / "pairs", exif=False)
    summary = build_dataset([source], tmp_path / "ds", FLAT, progress=False, durable=False)
    assert summary.ok, summary.failures
    dataset = load_dataset(tmp_path / "ds")
    # 6 EV apart in truth, but without EXIF only the rank is known: +1, and it is recorded.
    assert dataset.manifest["input_ev"].tolist() == [1.0, 1.0, 1.0]
    assert dataset.manifest["input_exposure_time_s"].isna().all()
    info = dataset.info.provenance["sources"][0]
    assert info["ev_basis"] == ["rank"]
    assert info["rank_scenes"] == ["Candle", "ICCV_01", "my-house"]
    notes = [text for text, _ in summary.report() if text.startswith("note:")]
    assert len(notes) == 1 and "3 of 3 scene(s)" in notes[0] and "ev_basis: rank" in notes[0]


def test_custom_pattern_groups_and_ranks_by_tag(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    for stops, tag in ((-2.0, "under"), (0.0, "mid"), (2.0, "over")):
        _jpeg(folder / f"{tag}-hall.jpg", stops)
        _jpeg(folder / f"{tag}-yard.jpg", stops, seed=2)
    config = BuildConfig(kind="flat", group_pattern=r"(?P<tag>[a-z]+)-(?P<scene>[a-z]+)\.jpg")
    found = discover(folder, config)
    assert [s.scene_id for s in found.scenes] == ["hall", "yard"]
    for spec in found.scenes:
        assert spec.problem is None and Path(spec.pairs[0].target.path).name.startswith("mid-")
        assert sorted(p.input.ev for p in spec.pairs) == pytest.approx([-2.0, 2.0], abs=0.01)


def test_bracket_folder_groups_by_exposure_sequence(tmp_path: Path) -> None:
    folder = tmp_path / "brackets"
    folder.mkdir()
    # Camera AEB order 0, -2, +2, three brackets; then one in -,0,+ order and a 5-shot one.
    number = 0
    orders = ((0, -2, 2), (0, -2, 2), (0, -2, 2), (-2, 0, 2), (0, -1, -2, 1, 2))
    for seed, order in enumerate(orders):
        for stops in order:
            number += 1
            _jpeg(folder / f"IMG_{number:04d}.JPG", float(stops), seed=seed)
    found = discover(folder, BuildConfig(kind="flat", group_by="exposure"))
    ids = [s.scene_id for s in found.scenes]
    assert ids == ["IMG_0001", "IMG_0004", "IMG_0007", "IMG_0010", "IMG_0013"]
    assert found.provenance["ev_basis"] == ["exif"] and found.provenance["group_by"] == "exposure"
    first = found.scenes[0]
    assert sorted(Path(p.input.path).name for p in first.pairs) == ["IMG_0002.JPG", "IMG_0003.JPG"]
    assert Path(first.pairs[0].target.path).name == "IMG_0001.JPG"
    assert sorted(p.input.ev for p in first.pairs) == pytest.approx([-2.0, 2.0], abs=0.01)
    assert sorted(p.input.ev for p in found.scenes[3].pairs) == pytest.approx([-2, 2], abs=0.01)
    # Five exposures: the middle by exposure (rank 2, 0 EV) is the target.
    assert sorted(p.input.ev for p in found.scenes[4].pairs) == pytest.approx([-2, -1, 1, 2])
    config = BuildConfig(kind="flat", group_by="exposure", max_side=64)
    summary = build_dataset([folder], tmp_path / "ds", config, progress=False, durable=False)
    assert summary.ok and summary.built == 5 and summary.pairs == 12, summary.failures


def test_bracket_folder_groups_by_capture_time(tmp_path: Path) -> None:
    folder = tmp_path / "brackets"
    folder.mkdir()
    start = datetime(2024, 5, 1, 10, 0, 0)
    # Three brackets a minute apart; the third's exposures (-1, +1, +3) differ from the
    # second's, so only the pause separates them.
    shots = [(0, -2.0), (1, 0.0), (1, 2.0), (60, -2.0), (60, 0.0), (61, 2.0),
             (300, -1.0), (300, 1.0), (301, 3.0)]  # fmt: skip
    for number, (seconds, stops) in enumerate(shots, start=1):
        _jpeg(folder / f"DSC{number:03d}.jpg", stops, taken=start + timedelta(seconds=seconds))
    found = discover(folder, BuildConfig(kind="flat", group_by="time"))
    assert [len(s.pairs) + 1 for s in found.scenes] == [3, 3, 3]
    assert [s.scene_id for s in found.scenes] == ["DSC001", "DSC004", "DSC007"]
    assert found.provenance["bracket_gap_s"] == 2.0
    # By exposure alone the 2nd and 3rd brackets run together (no exposure repeats).
    by_exposure = discover(folder, BuildConfig(kind="flat", group_by="exposure"))
    assert [len(s.pairs) + 1 for s in by_exposure.scenes] == [3, 6]
    # A gap shorter than the pause between shots of one bracket splits it.
    split = discover(folder, BuildConfig(kind="flat", group_by="time", bracket_gap_s=0.5))
    assert [len(s.pairs) + 1 for s in split.scenes if s.problem is None] == [2, 2, 2]


def test_bracket_grouping_without_exif_is_refused_naming_the_file(tmp_path: Path) -> None:
    folder = _pairs(tmp_path / "pairs", exif=False)
    with pytest.raises(SourceError, match=r"Candle_A\.jpg: no EXIF exposure time"):
        discover(folder, BuildConfig(kind="flat", group_by="exposure"))
    with pytest.raises(SourceError, match=r"Candle_A\.jpg: no EXIF capture time"):
        discover(folder, BuildConfig(kind="flat", group_by="time"))


def test_bad_pattern_and_lonely_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BuildConfigError, match="no named group 'scene'"):
        BuildConfig(kind="flat", group_pattern=r"(.+)_([AB])\.\w+")
    with pytest.raises(BuildConfigError, match="not a regular expression"):
        BuildConfig(kind="flat", group_pattern=r"(?P<scene>.+")
    source = _pairs(tmp_path / "pairs", exif=True)
    _jpeg(source / "Lonely_A.jpg", -3.0)
    _jpeg(source / "nounderscore.jpg", 0.0)
    summary = build_dataset([source], tmp_path / "ds", FLAT, progress=False, durable=False)
    errors = dict(summary.failures)
    assert summary.built == 3 and sorted(errors) == ["Lonely", "nounderscore.jpg"]
    assert "Lonely_A.jpg: the only file of scene 'Lonely'" in errors["Lonely"]
    assert "at least 2 exposures" in errors["Lonely"]
    assert (
        "nounderscore.jpg: its name does not match the group pattern" in errors["nounderscore.jpg"]
    )
    with pytest.raises(SourceError, match="no file name matches the group pattern"):
        discover(source, BuildConfig(kind="flat", group_pattern=r"(?P<scene>x+)\.png"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no image files"):
        discover(empty, FLAT)


def test_two_names_with_one_safe_id_fail_instead_of_merging(tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    for scene in ("a b", "a-b"):
        _jpeg(folder / f"{scene}_A.jpg", -1.0)
        _jpeg(folder / f"{scene}_B.jpg", 1.0)
    found = discover(folder, FLAT)
    problems = [s.problem for s in found.scenes if s.problem]
    assert len(problems) == 1 and "scene id 'a-b' is also that of scene" in str(problems[0])


def test_auto_never_picks_flat_and_keeps_the_other_kinds(tmp_path: Path) -> None:
    source = _pairs(tmp_path / "pairs", exif=True)
    with pytest.raises(SourceError, match=r"not a capture session.*pass --kind flat"):
        detect_kind(source)
    # A folder of scene folders stays `sequences`, even with stray images beside them.
    nested = tmp_path / "nested"
    (nested / "room").mkdir(parents=True)
    _jpeg(nested / "room" / "1.jpg", -1.0)
    _jpeg(nested / "room" / "2.jpg", 1.0)
    _jpeg(nested / "stray_A.jpg", 0.0)
    assert detect_kind(nested) == "sequences"
    (nested / "INPUT_IMAGES").mkdir()
    assert detect_kind(nested) == "msec"


def _cli() -> click.Group:
    from expokit.cli.curate_build import register

    @click.group()
    def curate() -> None:
        """Test group standing in for `expokit curate`."""

    register(curate)
    return curate


def test_cli_flat_options(tmp_path: Path) -> None:
    from expokit.cli import curate_build as front
    from expokit.curation.build import config as cfg

    assert (
        front.GROUP_BY == cfg.GROUP_BY and front.DEFAULT_GROUP_PATTERN == cfg.DEFAULT_GROUP_PATTERN
    )
    assert set(front.DISCOVERY_OPTIONS.values()) == set(cfg.DISCOVERY_FIELDS)
    source = _pairs(tmp_path / "pairs", exif=False)
    out = tmp_path / "ds"
    args = ["build", str(source), "--out", str(out), "--kind", "flat", "--no-progress"]
    result = CliRunner().invoke(
        _cli(), [*args, "--group-pattern", r"(?P<scene>.+)_(?P<tag>[AB])\.jpg", "--max-side", "64"]
    )
    assert result.exit_code == 0, result.output
    assert "built 3 scene(s)" in result.output and "ev_basis: rank" in result.output
    assert load_dataset(out).info.provenance["sources"][0]["group_pattern"].endswith(r"\.jpg")
    result = CliRunner().invoke(_cli(), [*args, "--group-pattern", r"(.+)_B\.jpg"])
    assert result.exit_code == 2 and "no named group 'scene'" in result.output


def test_grouping_options_do_not_change_the_scene_parameters() -> None:
    # They choose files, not what is done to them: existing records stay valid.
    plain = BuildConfig()
    other = BuildConfig(group_by="time", group_pattern=r"(?P<scene>.+)", bracket_gap_s=5.0)
    assert plain.params_hash() == other.params_hash()
    assert BuildConfig.from_dict(other.to_dict()) == other


def test_shared_mefb_folder_imports_and_validates(tmp_path: Path) -> None:
    source = shared_path("exposure", "mefb_under_over_pairs")
    out = tmp_path / "mefb"
    summary = build_dataset([source], out, FLAT, progress=False, durable=False)
    assert summary.ok, summary.failures
    assert (summary.built, summary.pairs) == (12, 12)
    dataset = load_dataset(out)
    frame = dataset.manifest.set_index("scene_id")
    assert len(frame) == 12 and "ICCV_01" in frame.index and "tower" in frame.index
    # ColorChecker has EXIF (1/40 s vs 1 s): log2(40) = 5.32 EV; the others are ranks.
    assert frame.loc["ColorChecker", "input_ev"] == pytest.approx(5.32, abs=0.01)
    info = dataset.info.provenance["sources"][0]
    assert info["ev_basis"] == ["exif", "rank"] and len(info["rank_scenes"]) == 11
    assert "ColorChecker" not in info["rank_scenes"]
    report = validate_dataset(out, workers=1)
    assert report.errors == [], report.summary()
