"""Image file reading with clear errors (OpenCV returns ``None`` or raises ``cv2.error``).

:func:`decode_image` is the one guarded decoder: it reads the size a PNG or JPEG header
claims before decoding and refuses images over :data:`MAX_IMAGE_PIXELS` (a 40-byte file may
claim 50000x50000 pixels, i.e. 7.5 GB once decoded), and turns every OpenCV failure into an
:class:`~expokit.core.errors.InputFileError` naming the file.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.core.errors import InputFileError

#: Largest image accepted, in pixels (width x height): 2**28, e.g. 16384 x 16384. Camera
#: images are at most ~100 Mpx; OpenCV's own limit (2**30) is reached only after allocating.
MAX_IMAGE_PIXELS = 1 << 28

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, progressive, lossless, ...), not DHT/JPG/DAC.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` a PNG or JPEG header claims, or None (other formats, no header).

    Parameters
    ----------
    data
        The file's bytes (only the first ones are read for a PNG; a JPEG is scanned up to
        its start-of-frame marker).
    """
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        position = 2
        while position + 9 <= len(data):
            if data[position] != 0xFF:
                return None
            marker = data[position + 1]
            if marker == 0xFF:  # fill byte
                position += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
                position += 2
                continue
            (length,) = struct.unpack(">H", data[position + 2 : position + 4])
            if marker in _JPEG_SOF:
                height, width = struct.unpack(">HH", data[position + 5 : position + 9])
                return int(width), int(height)
            position += 2 + length
    return None


def decode_image(data: bytes, path: str | Path, unchanged: bool = True) -> npt.NDArray[Any]:
    """Decode an image file's bytes with OpenCV (BGR order; 16-bit kept when ``unchanged``).

    Parameters
    ----------
    data
        The whole file.
    path
        The file's path, for error messages only.
    unchanged
        Keep bit depth and channels (``IMREAD_UNCHANGED``); else 8-bit BGR.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``, uint8 or uint16 (float32 for some TIFF/EXR).

    Raises
    ------
    InputFileError
        The header claims more than :data:`MAX_IMAGE_PIXELS` pixels, or OpenCV cannot
        decode the bytes (corrupt, truncated, not an image).
    """
    import cv2

    size = header_size(data)
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise InputFileError(
            path,
            f"image header claims {size[0]}x{size[1]} pixels, more than the "
            f"{MAX_IMAGE_PIXELS} expokit reads (a damaged or hostile file?)",
        )
    flag = cv2.IMREAD_UNCHANGED if unchanged else cv2.IMREAD_COLOR
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "decoder error"
        raise InputFileError(path, f"not a readable image (OpenCV: {detail})") from None
    if image is None:
        raise InputFileError(path, "not a readable image (OpenCV could not decode it)")
    return np.asarray(image)


def read_image(path: str | Path, unchanged: bool = True) -> npt.NDArray[Any]:
    """Read an image file with :func:`decode_image` (BGR; 16-bit kept when ``unchanged``).

    Raises
    ------
    InputFileError
        If the file is missing, unreadable, too large or cannot be decoded.
    """
    file = Path(path)
    if not file.is_file():
        raise InputFileError(file, "no such image file")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise InputFileError(file, f"cannot read: {exc.strerror or exc}") from None
    return decode_image(data, file, unchanged)
