"""EXIF tags of image files (one wrapper around ``exifread``) and the orientation tag.

``exifread`` raises many exception types on odd containers and logs a warning for every
tag it cannot parse; callers want "the tags, or none", so this module is the only place
that calls it.

:func:`read_orientation` reads only the Orientation tag (0x0112) of IFD0, by walking the
container's headers (JPEG markers, PNG chunks, WebP chunks, the TIFF itself): every image
read asks for it, so it must cost microseconds, not an ``exifread`` pass over all tags.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: EXIF/TIFF tag of the orientation (values 1..8, 1 = stored upright).
ORIENTATION_TAG = 0x0112
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_exif_tags(source: str | Path | bytes) -> dict[str, Any]:
    """EXIF tags of a file (path) or of its bytes, as ``exifread`` names them.

    Parameters
    ----------
    source
        Path of a JPEG, TIFF or TIFF-based RAW file, or the file's bytes.

    Returns
    -------
    dict
        ``{"EXIF ExposureTime": IfdTag, "Image Make": IfdTag, ...}`` (``details=False``:
        no maker notes or thumbnails); empty when the file cannot be read or has no
        EXIF that ``exifread`` understands. Never raises for a bad file.
    """
    import exifread

    # exifread logs a warning for every tag it cannot parse in odd RAW containers.
    logging.getLogger("exifread").setLevel(logging.ERROR)
    try:
        if isinstance(source, bytes):
            tags = exifread.process_file(io.BytesIO(source), details=False)
        else:
            with Path(source).open("rb") as handle:
                tags = exifread.process_file(handle, details=False)
    except Exception:  # exifread raises many types on odd containers; no EXIF then
        return {}
    return dict(tags) if tags else {}


def read_orientation(data: bytes) -> int:
    """EXIF orientation (tag 0x0112 of IFD0) of a JPEG, PNG, TIFF or WebP file's bytes.

    Parameters
    ----------
    data
        The whole file (only headers are walked: JPEG markers up to the scan, PNG and WebP
        chunk headers, the TIFF's first IFD).

    Returns
    -------
    int
        1..8 as the EXIF specification defines them (1: stored upright; 2-8: mirrored
        and/or rotated, see :func:`expokit.core.images.apply_orientation`). 1 when the file
        has no EXIF, no orientation tag, an invalid value (0 or above 8, written by some
        cameras and treated by every reader as "as stored"), or is another format. Never
        raises for a damaged file.
    """
    block = _exif_block(data)
    if block is None:
        return 1
    try:
        value = _ifd0_value(block, ORIENTATION_TAG)
    except (struct.error, IndexError):  # truncated IFD: no orientation
        return 1
    return value if value is not None and 1 <= value <= 8 else 1


def _strip_exif_header(block: bytes) -> bytes:
    """A TIFF block without the ``Exif\\0\\0`` prefix some writers put in PNG/WebP chunks."""
    return block[6:] if block.startswith(b"Exif\x00") else block


def _exif_block(data: bytes) -> bytes | None:
    """The TIFF-structured EXIF block of ``data`` (the file itself for a TIFF), or None."""
    if data[:4] in _TIFF_HEADERS:
        return data
    if data.startswith(b"\xff\xd8"):
        return _jpeg_exif(data)
    if data.startswith(_PNG_SIGNATURE):
        position = 8
        while position + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[position : position + 8])
            if kind == b"eXIf":
                return _strip_exif_header(data[position + 8 : position + 8 + length])
            if kind == b"IEND":
                return None
            position += 12 + length  # length, type, data, CRC
        return None
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        position = 12
        while position + 8 <= len(data):
            kind, length = struct.unpack("<4sI", data[position : position + 8])
            if kind == b"EXIF":
                return _strip_exif_header(data[position + 8 : position + 8 + length])
            position += 8 + length + (length & 1)  # chunks are padded to even sizes
    return None


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """``(marker, position, length)`` of each length-carrying segment of a JPEG's header, in
    order, up to its first scan: ``data[position]`` is the ``0xFF`` of the marker, the
    segment's payload is ``data[position + 4 : position + 2 + length]``. Stops at the start
    of scan, the end of the image, bytes that are not a marker, or the end of ``data``."""
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            position += 2
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image
            return
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        yield marker, position, length
        position += 2 + length


def _jpeg_exif(data: bytes) -> bytes | None:
    """The TIFF block of a JPEG's ``Exif`` APP1 segment (before the first scan), or None."""
    for marker, position, length in jpeg_segments(data):
        segment = data[position + 4 : position + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\x00"):
            return segment[6:]
    return None


def _ifd0_value(tiff: bytes, tag: int) -> int | None:
    """The integer value of ``tag`` in the first IFD of a TIFF block (BYTE, SHORT or LONG,
    count 1), or None when it is absent or of another type."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return None
    magic, offset = struct.unpack(order + "HI", tiff[2:8])
    if magic != 42:  # 43 is BigTIFF: not an EXIF container
        return None
    (count,) = struct.unpack(order + "H", tiff[offset : offset + 2])
    for index in range(count):
        entry = offset + 2 + 12 * index
        code, kind, number = struct.unpack(order + "HHI", tiff[entry : entry + 8])
        if code != tag:
            continue
        if number != 1:
            return None
        if kind == 1:  # BYTE
            return tiff[entry + 8]
        if kind == 3:  # SHORT
            return int(struct.unpack(order + "H", tiff[entry + 8 : entry + 10])[0])
        if kind == 4:  # LONG
            return int(struct.unpack(order + "I", tiff[entry + 8 : entry + 12])[0])
        return None
    return None
