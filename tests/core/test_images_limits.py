"""The pixel limit of the shared image reader holds for every format (hostile finding 2):
a small RLE BMP or a JPEG with a junk byte before its frame header decodes to hundreds of
megapixels; both are refused by their decoded size, naming the file, and running out of
memory while decoding is that file's :class:`InputFileError`, never a traceback."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

import expokit.core.images as images
from expokit.core.errors import ExpokitError, InputFileError
from expokit.core.images import header_size, read_image

#: A limit small enough that the files below exceed it without costing memory.
SMALL_LIMIT = 1 << 20


def rle_bmp(width: int, height: int) -> bytes:
    """An 8-bit RLE8-compressed BMP of one grey level: about 2 bytes per 255 pixels."""
    rows = bytearray()
    for _ in range(height):
        left = width
        while left:
            run = min(255, left)
            rows += bytes([run, 7])
            left -= run
        rows += b"\x00\x00"  # end of line
    rows += b"\x00\x01"  # end of bitmap
    palette = b"".join(bytes([i, i, i, 0]) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    head = b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset)
    return head + info + palette + bytes(rows)


def jpeg_with_junk(width: int, height: int) -> bytes:
    """A JPEG with one junk byte after its APP0 segment: libjpeg skips it (a warning), a
    strict marker walk stops there and never sees the frame header."""
    ok, buffer = cv2.imencode(".jpg", np.zeros((height, width, 3), np.uint8))
    assert ok
    data = buffer.tobytes()
    (app0,) = struct.unpack(">H", data[4:6])
    return data[: 4 + app0] + b"\x00" + data[4 + app0 :]


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", SMALL_LIMIT)
    return SMALL_LIMIT


def test_the_hostile_files_claim_their_decoded_size() -> None:
    """The reported files: a 2.3 MB RLE BMP of 289 Mpx, a JPEG with junk of 272 Mpx."""
    bomb = rle_bmp(17000, 17000)
    assert len(bomb) < 2_500_000
    assert header_size(bomb) == (17000, 17000)
    ok, buffer = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    assert ok
    data = bytearray(buffer.tobytes())
    # Patch the frame header of a tiny JPEG to claim 16500 x 16500 (272 Mpx).
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 16500, 16500)
    (app0,) = struct.unpack(">H", data[4:6])
    junk = bytes(data[: 4 + app0] + b"\x00" + data[4 + app0 :])
    assert header_size(junk) == (16500, 16500)


def test_a_huge_rle_bmp_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.bmp"
    path.write_bytes(rle_bmp(17000, 17000))
    with pytest.raises(InputFileError, match=r"bomb\.bmp: image header claims 17000x17000"):
        read_image(path)


def test_an_rle_bmp_over_the_limit_is_refused(tmp_path: Path, small_limit: int) -> None:
    path = tmp_path / "small.bmp"
    path.write_bytes(rle_bmp(2000, 1000))
    decoded = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), -1)
    assert decoded is not None and decoded.shape[:2] == (1000, 2000)  # OpenCV decodes it
    with pytest.raises(InputFileError, match=r"small\.bmp: .*2000x1000 pixels \(2 Mpx\)"):
        read_image(path)


def test_a_jpeg_with_junk_before_its_frame_header_is_refused(
    tmp_path: Path, small_limit: int
) -> None:
    path = tmp_path / "junk.jpg"
    path.write_bytes(jpeg_with_junk(2000, 1000))
    assert header_size(path.read_bytes()) == (2000, 1000)
    with pytest.raises(InputFileError, match=r"junk\.jpg: image header claims 2000x1000"):
        read_image(path, unchanged=False)


@pytest.mark.parametrize("ext", [".tiff", ".webp", ".ppm", ".png", ".jpg"])
def test_every_common_format_has_its_size_read_from_the_header(ext: str) -> None:
    ok, buffer = cv2.imencode(ext, np.zeros((30, 70, 3), np.uint8))
    assert ok and header_size(buffer.tobytes()) == (70, 30)


def test_a_format_no_probe_reads_is_refused_once_decoded(tmp_path: Path, small_limit: int) -> None:
    """Radiance HDR: Pillow cannot read its header, so the decoded array is checked."""
    ok, buffer = cv2.imencode(".hdr", np.zeros((1000, 2000, 3), np.float32))
    assert ok and header_size(buffer.tobytes()) is None
    path = tmp_path / "wide.hdr"
    path.write_bytes(buffer.tobytes())
    with pytest.raises(InputFileError, match=r"wide\.hdr: image decodes to 2000x1000 pixels"):
        read_image(path)


def test_running_out_of_memory_is_a_named_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.png"
    assert cv2.imwrite(str(path), np.zeros((20, 30, 3), np.uint8))

    def no_memory(*_: object) -> None:
        raise MemoryError

    monkeypatch.setattr(cv2, "imdecode", no_memory)
    with pytest.raises(InputFileError, match=r"big\.png: not enough memory .*30x20 pixels"):
        read_image(path)


def test_a_batch_of_files_goes_on_past_the_refused_ones(tmp_path: Path) -> None:
    """Batch callers catch :class:`ExpokitError` per file: the good file is still read."""
    (tmp_path / "a_bomb.bmp").write_bytes(rle_bmp(17000, 17000))
    assert cv2.imwrite(str(tmp_path / "b_good.png"), np.full((8, 8, 3), 9, np.uint8))
    read, failed = [], []
    for path in sorted(tmp_path.iterdir()):
        try:
            read.append(read_image(path).shape)
        except ExpokitError as exc:
            failed.append(str(exc))
    assert read == [(8, 8, 3)] and len(failed) == 1 and "a_bomb.bmp" in failed[0]
