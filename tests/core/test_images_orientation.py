"""EXIF orientation: the shared reader (``core/images.py``) returns images upright for every
orientation (1-8, mirrored ones included) and container (JPEG, PNG, TIFF, WebP) at any bit
depth, every reader of the package goes through it, and untagged files stay bit-exact.

Rotated files are made with Pillow (an independent implementation): the upright image is
turned into what a camera stores for a tag (``Image.transpose``) and saved with the tag;
Pillow's own ``ImageOps.exif_transpose`` is the second opinion on what "upright" means.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from expokit.core.exif import read_orientation
from expokit.core.images import (
    apply_orientation,
    decode_image,
    decode_oriented,
    orientation_note,
    read_image,
    read_oriented,
)

U8 = npt.NDArray[np.uint8]
T = Image.Transpose
#: The transform from the upright image to what is stored under each tag (the inverse of
#: what a viewer applies: 6 is shown rotated 90 degrees clockwise, so it is stored rotated
#: 90 degrees counter-clockwise, which Pillow calls ROTATE_90).
STORE = {
    1: None,
    2: T.FLIP_LEFT_RIGHT,
    3: T.ROTATE_180,
    4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE,
    6: T.ROTATE_90,
    7: T.TRANSVERSE,
    8: T.ROTATE_270,
}


def upright_image(height: int = 48, width: int = 32, seed: int = 0) -> U8:
    """A portrait RGB image without any symmetry: smooth texture, a bright block in the
    top-left corner and a dark bar along the bottom (smooth enough for JPEG)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(40, 200, (height // 8, width // 8, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    image[: height // 4, : width // 3] = (250, 240, 30)
    image[-height // 8 :, :] = (10, 20, 90)
    return np.ascontiguousarray(image)


def stored_bytes(upright: npt.NDArray, orientation: int, fmt: str, **options: object) -> bytes:
    """What a camera writes: ``upright`` stored turned for ``orientation``, with the tag."""
    image = Image.fromarray(upright)
    method = STORE[orientation]
    if method is not None:
        image = image.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    image.save(out, fmt, exif=exif.tobytes(), **options)
    return out.getvalue()


def error_levels(a: npt.NDArray, b: npt.NDArray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def png_with_exif(png: bytes, tiff_block: bytes) -> bytes:
    """``png`` with an eXIf chunk (``tiff_block``) inserted after IHDR (CRC included)."""
    end_of_ihdr = 8 + 8 + 13 + 4
    chunk = b"eXIf" + tiff_block
    packed = struct.pack(">I", len(tiff_block)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return png[:end_of_ihdr] + packed + png[end_of_ihdr:]


def tiff_block(orientation: int, order: str = "<", kind: int = 3) -> bytes:
    """A minimal EXIF TIFF block: IFD0 with Make (ASCII, before) and Orientation."""
    head = (b"II*\x00" if order == "<" else b"MM\x00*") + struct.pack(order + "I", 8)
    entries = struct.pack(order + "H", 2)
    entries += struct.pack(order + "HHI", 0x010F, 2, 4) + b"Cam\x00"
    value = struct.pack(order + "H", orientation) + b"\x00\x00" if kind == 3 else b""
    if kind == 4:
        value = struct.pack(order + "I", orientation)
    entries += struct.pack(order + "HHI", 0x0112, kind, 1) + value
    return head + entries + struct.pack(order + "I", 0)


def jpeg_with_app1(jpeg: bytes, *payloads: bytes) -> bytes:
    """``jpeg`` with APP1 segments (each payload as is) right after SOI."""
    segments = b"".join(b"\xff\xe1" + struct.pack(">H", len(p) + 2) + p for p in payloads)
    return jpeg[:2] + segments + jpeg[2:]


# ----------------------------------------------------------------------- shared reader


@pytest.mark.parametrize("orientation", [6, 8, 3, 2, 1, 4, 5, 7])
def test_rotated_jpeg_reads_upright(orientation: int) -> None:
    upright = upright_image()
    data = stored_bytes(upright, orientation, "JPEG", quality=95)
    decoded = decode_oriented(data, "x.jpg")
    rgb = decoded.pixels[..., ::-1]
    assert decoded.orientation == orientation
    assert rgb.shape == upright.shape  # portrait, 48 x 32, for 5-8 too
    assert error_levels(rgb, upright) < 3.0  # JPEG loss only
    if orientation != 1:  # the stored (unturned) pixels are far from the upright image
        stored = np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))
        stored = stored[..., ::-1]
        assert stored.shape != upright.shape or error_levels(stored, upright) > 20
    # Pillow agrees on what upright means
    pil = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    assert error_levels(rgb, pil) < 1.5
    # the 8-bit colour mode gives the same picture (OpenCV alone applies the tag only there)
    assert error_levels(decode_image(data, "x.jpg", unchanged=False), decoded.pixels) == 0


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_lossless_containers_read_upright_bit_exact(fmt: str, orientation: int) -> None:
    upright = upright_image(40, 24, seed=orientation)
    options = {"lossless": True} if fmt == "WEBP" else {}
    data = stored_bytes(upright, orientation, fmt, **options)
    for unchanged in (True, False):
        decoded = decode_oriented(data, f"x.{fmt.lower()}", unchanged)
        assert decoded.orientation == orientation
        assert np.array_equal(decoded.pixels[..., ::-1], upright), (fmt, orientation, unchanged)


@pytest.mark.parametrize("orientation", [6, 2, 7])
def test_16_bit_png_and_tiff_with_orientation_stay_bit_exact(orientation: int) -> None:
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(orientation)
    upright = rng.integers(0, 65536, (20, 12, 3), dtype=np.uint16)  # RGB
    # what the camera stores: the inverse of the viewer's transform
    inverse = {6: 8, 8: 6}.get(orientation, orientation)
    stored16 = apply_orientation(upright, inverse)
    assert np.array_equal(apply_orientation(stored16, orientation), upright)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(stored16[..., ::-1]))
    assert ok
    png_tagged = png_with_exif(png.tobytes(), tiff_block(orientation))
    decoded = decode_oriented(png_tagged, "x.png")
    assert decoded.pixels.dtype == np.uint16 and decoded.orientation == orientation
    assert np.array_equal(decoded.pixels[..., ::-1], upright)
    tif = io.BytesIO()
    tifffile.imwrite(tif, stored16, photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    decoded = decode_oriented(tif.getvalue(), "x.tif")
    assert decoded.pixels.dtype == np.uint16 and decoded.orientation == orientation
    assert np.array_equal(decoded.pixels[..., ::-1], upright)  # OpenCV's own turn not doubled


def test_untagged_files_are_read_exactly_as_opencv_reads_them() -> None:
    """Everything expokit writes (dataset images, 16-bit renders, masks) has no tag: the
    reader returns OpenCV's IMREAD_UNCHANGED pixels, bit for bit."""
    rng = np.random.default_rng(5)
    cases: dict[str, npt.NDArray[Any]] = {
        ".png": rng.integers(0, 65536, (9, 13, 3), dtype=np.uint16),
        ".tif": rng.integers(0, 65536, (9, 13, 3), dtype=np.uint16),
        ".jpg": upright_image(),
    }
    mask = np.zeros((9, 13), np.uint8)
    mask[2:7, 3:11] = 255
    cases[".mask.png"] = mask
    for suffix, pixels in cases.items():
        ok, encoded = cv2.imencode(suffix[-4:], pixels)
        assert ok
        data = encoded.tobytes()
        assert read_orientation(data) == 1
        want = np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))
        got = decode_oriented(data, "x" + suffix)
        assert got.orientation == 1 and got.note is None
        assert got.pixels.dtype == want.dtype and np.array_equal(got.pixels, want), suffix


def test_read_orientation_headers() -> None:
    ok, jpeg = cv2.imencode(".jpg", upright_image())
    assert ok
    plain = jpeg.tobytes()
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    for order in ("<", ">"):
        for kind in (3, 4):
            tagged = jpeg_with_app1(plain, xmp, b"Exif\x00\x00" + tiff_block(6, order, kind))
            assert read_orientation(tagged) == 6, (order, kind)
            pixels = decode_image(tagged, "x.jpg")
            assert pixels.shape[:2] == (32, 48)  # the portrait image turned: landscape now
    for value in (0, 9, 65535):  # invalid values are "as stored", as every viewer does
        assert read_orientation(jpeg_with_app1(plain, b"Exif\x00\x00" + tiff_block(value))) == 1
    for damaged in (b"", b"\xff\xd8", plain[:40], b"II*\x00\xff\xff\xff\xff", b"RIFF0000WEBP"):
        assert read_orientation(damaged) == 1
    cut = jpeg_with_app1(plain, b"Exif\x00\x00" + tiff_block(6))[:30]  # IFD cut short
    assert read_orientation(cut) == 1


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "TIFF", "WEBP"])
def test_read_orientation_agrees_with_pillow(fmt: str) -> None:
    for orientation in range(1, 9):
        data = stored_bytes(upright_image(16, 16), orientation, fmt)
        assert read_orientation(data) == Image.open(io.BytesIO(data)).getexif()[0x0112]


def test_apply_orientation_matches_pillow_for_every_dtype() -> None:
    upright = upright_image(12, 20)
    for orientation in range(1, 9):
        data = stored_bytes(upright, orientation, "PNG")
        stored = np.asarray(Image.open(io.BytesIO(data)))
        want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
        assert np.array_equal(want, upright)
        for dtype in (np.uint8, np.uint16, np.float32, np.int64):
            got = apply_orientation(stored.astype(dtype), orientation)
            assert got.dtype == dtype and np.array_equal(got, want.astype(dtype))
            grey = apply_orientation(stored[..., 0].astype(dtype), orientation)
            assert np.array_equal(grey, want[..., 0].astype(dtype))


def test_notes_name_the_orientation() -> None:
    assert orientation_note(1) is None
    assert orientation_note(6) == "rotated per EXIF orientation 6 (90 degrees clockwise)"
    assert orientation_note(8) == "rotated per EXIF orientation 8 (90 degrees counter-clockwise)"
    assert orientation_note(2) == "mirrored per EXIF orientation 2 (left-right)"
    assert all(f"EXIF orientation {o} " in str(orientation_note(o)) for o in range(2, 9))


# ------------------------------------------------------------- every reader uses it


def test_every_package_reader_returns_the_upright_image(tmp_path: Path) -> None:
    from expokit.calibration.geometry_io import read_image_pairs
    from expokit.capture.footage import source_size
    from expokit.curation.build.sources import read_complete_image
    from expokit.models import data, protocol

    upright = upright_image()
    path = tmp_path / "portrait.jpg"
    path.write_bytes(stored_bytes(upright, 6, "JPEG", quality=95))
    oriented = read_oriented(path)
    assert oriented.orientation == 6 and oriented.note is not None
    assert error_levels(read_image(path)[..., ::-1], upright) < 3
    assert error_levels(read_complete_image(path)[..., ::-1], upright) < 3  # curate build
    assert error_levels(data.read_rgb(path), upright) < 3  # train / eval
    assert error_levels(protocol.read_rgb(path), upright) < 3  # evaluation protocol
    (pair,) = read_image_pairs([path], [path])  # calibrate geometry
    assert pair.reference_gray.shape == upright.shape[:2]
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0001.jpg").write_bytes(path.read_bytes())
    assert source_size(frames) == (32, 48)  # simulator stills: (width, height), portrait


def test_masks_with_orientation_read_upright_and_exact(tmp_path: Path) -> None:
    from expokit.models.data import read_mask

    mask = np.zeros((30, 20), np.uint8)
    mask[:10, :5] = 255
    mask[25:, 12:] = 255
    path = tmp_path / "mask.png"
    path.write_bytes(stored_bytes(mask, 8, "PNG"))
    assert np.array_equal(read_mask(path), (mask > 0).astype(np.uint8))


def test_undecodable_file_still_names_the_file(tmp_path: Path) -> None:
    from expokit.models.data import DataError, read_mask
    from expokit.models.protocol import ProtocolError, read_rgb

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DataError, match=r"bad\.png: mask: not a readable image"):
        read_mask(bad)
    with pytest.raises(ProtocolError, match=r"bad\.png: cannot be read as an image"):
        read_rgb(bad)


# ------------------------------------------------------------------ curate build


def test_sequences_build_of_rotated_jpegs_gives_upright_pairs(tmp_path: Path) -> None:
    """A scene shot in portrait: each exposure stored landscape with another tag (6, 8, 3
    and mirrored 2) and one stored upright; the build aligns them as one upright scene."""
    from expokit.cli import cli
    from expokit.curation.dataset.format import load_dataset
    from expokit.models.data import read_rgb

    upright = upright_image(96, 64, seed=3)
    scene = tmp_path / "src" / "portrait"
    scene.mkdir(parents=True)
    gains = (0.55, 0.75, 1.0, 1.2, 1.4)
    tags = (6, 8, 1, 3, 2)
    for number, (gain, tag) in enumerate(zip(gains, tags, strict=True), start=1):
        exposure = np.clip(upright.astype(np.float32) * gain, 0, 255).astype(np.uint8)
        (scene / f"{number}.jpg").write_bytes(stored_bytes(exposure, tag, "JPEG", quality=95))
    out = tmp_path / "ds"
    result = CliRunner().invoke(
        cli,
        ["curate", "build", str(tmp_path / "src"), "--kind", "sequences", "--out", str(out),
         "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    dataset = load_dataset(out)
    frame = dataset.manifest
    assert len(frame) == 4
    assert set(frame["width"]) == {64} and set(frame["height"]) == {96}  # portrait
    target = read_rgb(dataset.path(str(frame["target_path"].iloc[0])))
    assert target.shape == upright.shape and error_levels(target, upright) < 4
    assert (frame["alignment_residual_px"] < 0.5).all()  # every exposure turned the same way
    for row in frame.to_dict("records"):
        image = read_rgb(dataset.path(str(row["input_path"])))
        assert image.shape == upright.shape
        # the stored file carries no tag: the dataset is upright for every reader
        assert read_orientation(dataset.path(str(row["input_path"])).read_bytes()) == 1
