from __future__ import annotations

from pathlib import Path

import pytest

from expokit.capture.rig_config import RigConfigError, load_rig_config

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
