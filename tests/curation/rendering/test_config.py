import pytest

from expokit.curation.rendering.config import MeterSpec, OutputFormat, RenderConfig


def test_defaults_are_msec_ladder_jpeg() -> None:
    config = RenderConfig()
    assert config.evs == (-1.5, -1.0, 0.0, 1.0, 1.5)
    assert config.formats == (OutputFormat.JPG,)


def test_hash_changes_with_any_parameter() -> None:
    base = RenderConfig()
    assert base.params_hash() == RenderConfig().params_hash()
    variants = [
        RenderConfig(evs=(-1.0, 0.0)),
        RenderConfig(jpeg_quality=90),
        RenderConfig(white_balance="daylight"),
        RenderConfig(meter=MeterSpec("median", 0.18)),
        RenderConfig(formats=(OutputFormat.PNG,)),
        RenderConfig(demosaic="LINEAR"),
    ]
    hashes = {v.params_hash() for v in variants}
    assert base.params_hash() not in hashes and len(hashes) == len(variants)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layout": "foo"}, "layout"),
        ({"layout": "msec", "formats": (OutputFormat.PNG,)}, "JPEG only"),
        ({"layout": "msec", "gt_ev": 3.0}, "not in the EV ladder"),
        ({"white_balance": "auto"}, "white balance"),
        ({"jpeg_quality": 0}, "JPEG quality"),
        ({"demosaic": "MAGIC"}, "demosaic"),
        ({"formats": ()}, "at least one"),
        ({"formats": ("jpg", "jpg")}, "twice"),
    ],
)
def test_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RenderConfig(**kwargs)


def test_meter_parse() -> None:
    assert MeterSpec.parse("mean:0.25") == MeterSpec("mean", 0.25)
    assert MeterSpec.parse("median") == MeterSpec("median", 0.18)
    for bad in ("mode:0.2", "median:2", "median:x"):
        with pytest.raises(ValueError, match="--meter"):
            MeterSpec.parse(bad)


def test_format_suffixes_unique() -> None:
    suffixes = [f.suffix for f in OutputFormat]
    assert len(set(suffixes)) == len(suffixes)
    assert OutputFormat.TIFF16_LINEAR.suffix == ".lin16.tif"
    assert OutputFormat.PNG16.bits == 16 and OutputFormat.PNG16.transfer == "srgb"
