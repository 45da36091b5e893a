from __future__ import annotations

import math
from pathlib import Path

import pytest

from expokit.capture.rig_config import RigConfig, RigConfigError, load_rig_config, read_rig_json

REPO = Path(__file__).resolve().parents[2]


def test_examples_load() -> None:
    fake = load_rig_config(REPO / "examples" / "rig_fake.toml")
    assert fake.serials == {"reference": "REF-0001", "test": "TST-0002"}
    assert fake.ev_offset == -2.0 and fake.output_root.is_absolute()
    real = load_rig_config(REPO / "examples" / "rig_gphoto2.toml")
    assert real.backend == "gphoto2" and real.retry.attempts == 5


def test_roundtrip_to_dict(rig_config) -> None:  # type: ignore[no-untyped-def]
    from expokit.capture.rig_config import RigConfig

    again = RigConfig.from_dict(rig_config.to_dict())
    assert again.to_dict() == rig_config.to_dict()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('serial = "TST-2"', 'serial = "REF-1"', 1), "same serial"),
        (lambda t: t.replace("[roles.test]", "[roles.other]", 1), "roles missing: test"),
        (lambda t: "colour = 1\n" + t, "unknown keys: colour"),
        (lambda t: t.replace('backend = "fake"', 'backend = "usb"'), "backend must be one of"),
        (lambda t: t.replace('shutter = "1/125"', 'shutter = "fast"'), "not a shutter speed"),
        (lambda t: t.replace("ev_offset = -2.0", "ev_offset = 40"), "ev_offset"),
        (lambda t: 'filename_template = "{index}{ext}"\n' + t, "must contain"),
        (
            lambda t: 'filename_template = "{index}{role}{ev_token}{ext}{lens}"\n' + t,
            "unknown fields",
        ),
        (lambda t: t.replace("attempts = 4", "attempts = 0"), "attempts"),
        (lambda t: t.replace("[retry]", "[retry\n"), "not valid TOML"),
    ],
)
def test_bad_configs_name_file_and_problem(
    tmp_path: Path, rig_file: Path, edit, message: str
) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(rig_file.read_text()))
    with pytest.raises(RigConfigError) as info:
        load_rig_config(bad)
    assert str(info.value).startswith(str(bad)) and message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RigConfigError, match="no such rig config file"):
        load_rig_config(tmp_path / "nope.toml")


# ------------------------------------------------------------------- exif_tolerance_ev


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan", "-0.5"])
def test_non_finite_or_negative_exif_tolerance_is_refused(rig_file: Path, value: str) -> None:
    """``error_ev > nan`` is never true: a NaN or infinite tolerance (valid TOML) would
    switch the EXIF check off, so a shutter the camera ignored would pass unflagged."""
    rig_file.write_text(f"exif_tolerance_ev = {value}\n" + rig_file.read_text())
    with pytest.raises(RigConfigError) as info:
        load_rig_config(rig_file)
    message = str(info.value)
    assert message.startswith(f"{rig_file}: exif_tolerance_ev = ")
    assert "must be a finite number of EV >= 0" in message


@pytest.mark.parametrize("value", ["0", "0.0", "0.5", "2"])
def test_finite_non_negative_exif_tolerance_is_kept(rig_file: Path, value: str) -> None:
    rig_file.write_text(f"exif_tolerance_ev = {value}\n" + rig_file.read_text())
    assert load_rig_config(rig_file).exif_tolerance_ev == float(value)


def test_exif_tolerance_is_checked_without_the_toml_parser(rig_config: RigConfig) -> None:
    """Constructing or replacing the dataclass, and a session's rig.json (Python's JSON
    reader accepts NaN and Infinity), go through the same rule."""
    import dataclasses

    assert rig_config.exif_tolerance_ev == 0.34  # the default
    for bad in (math.nan, math.inf, -0.01):
        with pytest.raises(ValueError, match=r"exif_tolerance_ev = .* must be a finite number"):
            RigConfig(roles=rig_config.roles, backend="fake", exif_tolerance_ev=bad)
        with pytest.raises(ValueError, match="exif_tolerance_ev"):
            dataclasses.replace(rig_config, exif_tolerance_ev=bad)
    with pytest.raises(ValueError, match="exif_tolerance_ev = True must be a number of EV"):
        dataclasses.replace(rig_config, exif_tolerance_ev=True)
    assert dataclasses.replace(rig_config, exif_tolerance_ev=0.0).exif_tolerance_ev == 0.0


def test_rig_json_with_nan_tolerance_names_the_file(rig_config: RigConfig, tmp_path: Path) -> None:
    import json

    data = rig_config.to_dict()
    data["exif_tolerance_ev"] = math.nan
    path = tmp_path / "rig.json"
    path.write_text(json.dumps(data))  # writes the bare token NaN, which json.loads reads
    assert "NaN" in path.read_text()
    with pytest.raises(RigConfigError) as info:
        read_rig_json(path)
    assert str(info.value).startswith(f"{path}: exif_tolerance_ev = nan must be a finite")


def test_check_exposure_refuses_a_tolerance_that_passes_everything() -> None:
    from expokit.capture.exif_check import check_exposure

    for bad in (math.nan, math.inf, -1.0):
        with pytest.raises(ValueError, match=r"tolerance_ev = .* must be a finite number"):
            check_exposure(b"", {"shutter": "1/125"}, bad)
    assert check_exposure(b"", {"shutter": "1/125"}, 0.34)["ok"] is None  # no EXIF: unchecked


def test_non_finite_bracket_names_the_field(rig_file: Path) -> None:
    text = rig_file.read_text()
    rig_file.write_text(text.replace("bracket = [-1, 0, 1]", "bracket = [nan, 0]"))
    with pytest.raises(RigConfigError) as info:
        load_rig_config(rig_file)
    assert str(info.value) == f"{rig_file}: bracket = [nan, 0] must hold finite EVs"
