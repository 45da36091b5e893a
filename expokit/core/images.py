"""Image file reading with clear errors (OpenCV returns ``None`` or raises ``cv2.error``).

:func:`decode_oriented` is the one guarded decoder (:func:`decode_image`, :func:`read_image`
and :func:`read_oriented` wrap it) behind every reader of images that come from outside:
``curate build`` sources, ``calibrate geometry``, the dataset loaders, the evaluation
protocol, simulator stills, ``infer`` and ``validate``. It reads the size the header
claims before decoding (PNG and JPEG parsed here, a JPEG's frame header found even after
junk bytes as libjpeg finds it; every other format probed by Pillow's lazy open) and
refuses images over :data:`MAX_IMAGE_PIXELS` (a 40-byte file may claim 50000x50000 pixels,
i.e. 7.5 GB once decoded; a 2 MB RLE BMP hundreds of megapixels); a decoded image over the
limit (a format no probe knows) is refused too, and running out of memory while decoding
is that file's failure. Every failure is an :class:`~expokit.core.errors.InputFileError`
naming the file (batch callers catch it and go on), and the image is returned
**upright**: the EXIF Orientation tag (0x0112, values 1-8, mirrored ones included) of a
JPEG, PNG, TIFF or WebP is applied whatever the bit depth or channel count.

OpenCV alone is inconsistent here: ``IMREAD_COLOR`` applies the tag of a JPEG/PNG/WebP,
``IMREAD_UNCHANGED`` (16-bit, alpha) ignores it, and its TIFF decoder applies it under
every flag. So the decoder asks OpenCV to ignore the tag and applies it itself, except
for TIFF where it checks once (:func:`_opencv_orients_tiff`) whether OpenCV already did.
The applied transform is a pure permutation of pixels (16-bit images and masks stay
bit-exact); files without the tag (everything expokit writes) pay only a header walk.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.core.errors import InputFileError
from expokit.core.exif import read_orientation

#: Largest image accepted, in pixels (width x height): 2**28, e.g. 16384 x 16384. Camera
#: images are at most ~100 Mpx; OpenCV's own limit (2**30) is reached only after allocating.
MAX_IMAGE_PIXELS = 1 << 28

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, progressive, lossless, ...), not DHT/JPG/DAC.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` an image file's header claims, or None (no header found).

    PNG and JPEG headers are parsed here; every other format (BMP, TIFF, WebP, PNM, GIF,
    ...) is probed by Pillow's lazy open, which reads the header only. The size is what
    decoding would allocate whatever the file size: a 2 MB RLE-compressed BMP may decode to
    hundreds of megapixels.

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
        size = _jpeg_frame_size(data)
        if size is not None:
            return size
    return _probed_size(data)


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a JPEG's first start-of-frame marker, found as libjpeg finds it.

    libjpeg skips any bytes that are not a marker ("N extraneous bytes before marker" is
    only a warning), so a strict segment walk (:func:`~expokit.core.exif.jpeg_segments`,
    which stops at the first junk byte) would miss a frame header that the decoder uses.
    """
    position, end = 2, len(data)
    while position < end:
        found = data.find(b"\xff", position)
        if found < 0:
            return None
        position = found + 1
        while position < end and data[position] == 0xFF:  # fill bytes
            position += 1
        if position >= end:
            return None
        marker = data[position]
        position += 1  # now at the segment's length field
        if marker in (0x00, 0x01) or 0xD0 <= marker <= 0xD8:  # no length field
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no frame header
            return None
        if marker in _JPEG_SOF:
            if position + 7 > end:
                return None
            height, width = struct.unpack(">HH", data[position + 3 : position + 7])
            return int(width), int(height)  # libjpeg refuses a second frame header
        if position + 2 > end:
            return None
        (length,) = struct.unpack(">H", data[position : position + 2])
        position += length
    return None


def _probed_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` Pillow reads from the header of ``data``, or None (a format
    Pillow does not know, or a header it cannot parse).

    Calls each plugin's opener as :func:`PIL.Image.open` does, without its own
    decompression-bomb check (that would refuse above Pillow's limit, not expokit's, and
    without giving the size); nothing is decoded.
    """
    import io

    from PIL import Image

    prefix = data[:16]
    tried: set[str] = set()
    for loader in (Image.preinit, Image.init):  # common plugins first, then all
        loader()
        for name in list(Image.ID):
            if name in tried or name not in Image.OPEN:
                continue
            tried.add(name)
            factory, accept = Image.OPEN[name]
            try:
                accepted = accept is None or accept(prefix)
                if isinstance(accepted, str) or not accepted:  # a str is Pillow's warning
                    continue
                image = factory(io.BytesIO(data), "")
            except Exception:  # a header this plugin cannot parse: try the others
                continue
            width, height = image.size
            return int(width), int(height)
    return None


def _too_large(path: str | Path, width: int, height: int, what: str) -> InputFileError:
    return InputFileError(
        path,
        f"image {what} {width}x{height} pixels ({width * height / 1e6:.0f} Mpx), more "
        f"than the {MAX_IMAGE_PIXELS} ({MAX_IMAGE_PIXELS / 1e6:.0f} Mpx) expokit reads "
        "(a damaged or hostile file?)",
    )


#: What each EXIF orientation does to the stored image to show it upright.
_ORIENTATION_TEXT = {
    2: "mirrored per EXIF orientation 2 (left-right)",
    3: "rotated per EXIF orientation 3 (180 degrees)",
    4: "mirrored per EXIF orientation 4 (top-bottom)",
    5: "rotated per EXIF orientation 5 (transposed: 90 degrees clockwise, mirrored left-right)",
    6: "rotated per EXIF orientation 6 (90 degrees clockwise)",
    7: "rotated per EXIF orientation 7 (transverse: 90 degrees clockwise, mirrored top-bottom)",
    8: "rotated per EXIF orientation 8 (90 degrees counter-clockwise)",
}
_TIFF_HEADERS = (b"II*\x00", b"MM\x00*")
#: Sample types OpenCV's flip/rotate handle (anything else goes through numpy).
_CV_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


@dataclass(frozen=True)
class OrientedImage:
    """A decoded image, upright, and the EXIF orientation applied to get there.

    Attributes
    ----------
    pixels
        ``(H, W)`` or ``(H, W, C)`` in OpenCV's channel order (BGR/BGRA), uint8, uint16 or
        float32, upright (``H``/``W`` are the displayed height and width).
    orientation
        The EXIF orientation of the file (1..8); 1 when it has none (stored upright).
    """

    pixels: npt.NDArray[Any]
    orientation: int = 1

    @property
    def note(self) -> str | None:
        """What the orientation did, for users (``"rotated per EXIF orientation 6 (...)"``),
        or None when the file was stored upright."""
        return orientation_note(self.orientation)


def orientation_note(orientation: int) -> str | None:
    """``"rotated per EXIF orientation 6 (90 degrees clockwise)"`` and the like; None for 1."""
    return _ORIENTATION_TEXT.get(orientation)


def apply_orientation(image: npt.NDArray[Any], orientation: int) -> npt.NDArray[Any]:
    """The stored pixels ``image`` turned upright for EXIF ``orientation`` (1..8).

    Parameters
    ----------
    image
        ``(H, W)`` or ``(H, W, C)``, any dtype, as stored in the file (row 0 = first row).
    orientation
        EXIF Orientation: 1 as stored, 2 mirror left-right, 3 rotate 180, 4 mirror
        top-bottom, 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90
        counter-clockwise (the same transforms as Pillow's ``ImageOps.exif_transpose``).

    Returns
    -------
    numpy.ndarray
        Same dtype and channels, ``(W, H, ...)`` for 5-8; a permutation of the input's
        pixels (no resampling). ``image`` itself for 1 or any value outside 2..8.
    """
    if orientation not in _ORIENTATION_TEXT:
        return image
    if image.dtype in _CV_DTYPES and (image.ndim == 2 or 2 <= image.shape[2] <= 4):
        import cv2

        # OpenCV's flip/transpose/rotate are 3-5x faster than numpy's strided copies.
        if orientation in (2, 4):
            return np.asarray(cv2.flip(image, 1 if orientation == 2 else 0))
        if orientation in (3, 6, 8):
            codes = {
                3: cv2.ROTATE_180,
                6: cv2.ROTATE_90_CLOCKWISE,
                8: cv2.ROTATE_90_COUNTERCLOCKWISE,
            }
            return np.asarray(cv2.rotate(image, codes[orientation]))
        transposed = cv2.transpose(image)
        return np.asarray(transposed if orientation == 5 else cv2.flip(transposed, -1))
    a = image if orientation <= 4 else image.swapaxes(0, 1)
    flip_rows = orientation in (3, 4, 7, 8)
    flip_cols = orientation in (2, 3, 6, 7)
    if flip_rows:
        a = a[::-1]
    if flip_cols:
        a = a[:, ::-1]
    return np.ascontiguousarray(a)


def _tiny_tiff(orientation: int) -> bytes:
    """A 2x1 8-bit grey TIFF (pixels 0, 255) with an Orientation tag: the probe below."""
    entries = [
        (256, 3, 2), (257, 3, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1),
        (273, 4, 8 + 2 + 12 * 10 + 4), (274, 3, orientation), (277, 3, 1), (278, 3, 1),
        (279, 4, 2),
    ]  # fmt: skip
    ifd = struct.pack("<H", len(entries))
    for code, kind, value in entries:
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", code, kind, 1) + packed
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x00\xff"


@functools.cache
def _opencv_orients_tiff(flag: int) -> bool:
    """Whether OpenCV's TIFF decoder already applies the Orientation tag under ``flag``
    (it does in OpenCV 4.x/5.x whatever the flag; checked once on a tiny mirrored TIFF)."""
    import cv2

    image = cv2.imdecode(np.frombuffer(_tiny_tiff(2), np.uint8), flag)
    return image is not None and int(np.asarray(image).reshape(-1)[0]) == 255


def decode_oriented(data: bytes, path: str | Path, unchanged: bool = True) -> OrientedImage:
    """Decode an image file's bytes with OpenCV and turn it upright per its EXIF orientation.

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
    OrientedImage
        ``pixels``: ``(H, W)`` or ``(H, W, C)``, uint8 or uint16 (float32 for some
        TIFF/EXR), BGR order, upright; ``orientation``: the EXIF value applied (1: none).

    Raises
    ------
    InputFileError
        The header claims more than :data:`MAX_IMAGE_PIXELS` pixels (any format: PNG and
        JPEG parsed here, the others probed by Pillow), the decoded image has more (a
        format no probe knows), decoding runs out of memory, or OpenCV cannot decode the
        bytes (corrupt, truncated, not an image).
    """
    import cv2

    try:
        size = header_size(data)
    except MemoryError:
        size = None  # the decode below is guarded too
    if size is not None and size[0] * size[1] > MAX_IMAGE_PIXELS:
        raise _too_large(path, *size, "header claims")
    # OpenCV applies the tag only for some flags and formats; ask it not to, apply it here.
    flag = cv2.IMREAD_UNCHANGED if unchanged else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        if image is None:
            raise InputFileError(path, "not a readable image (OpenCV could not decode it)")
        pixels = np.asarray(image)
        # Last line for formats no probe reads: refused once decoded, before any copy.
        if pixels.ndim >= 2 and pixels.shape[0] * pixels.shape[1] > MAX_IMAGE_PIXELS:
            raise _too_large(path, pixels.shape[1], pixels.shape[0], "decodes to")
        orientation = read_orientation(data)
        if orientation != 1 and not (data[:4] in _TIFF_HEADERS and _opencv_orients_tiff(flag)):
            pixels = apply_orientation(pixels, orientation)
    except cv2.error as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "decoder error"
        raise InputFileError(path, f"not a readable image (OpenCV: {detail})") from None
    except MemoryError:
        # One file too big for this machine is that file's failure: batch callers catch
        # InputFileError and go on with the other files.
        claimed = f" ({size[0]}x{size[1]} pixels)" if size is not None else ""
        raise InputFileError(
            path, f"not enough memory to decode this image{claimed} ({len(data)} bytes)"
        ) from None
    return OrientedImage(pixels, orientation)


def decode_image(data: bytes, path: str | Path, unchanged: bool = True) -> npt.NDArray[Any]:
    """The pixels of :func:`decode_oriented` (BGR, upright; 16-bit kept when ``unchanged``).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``, uint8 or uint16 (float32 for some TIFF/EXR), upright
        per the file's EXIF orientation.

    Raises
    ------
    InputFileError
        As :func:`decode_oriented`.
    """
    return decode_oriented(data, path, unchanged).pixels


def read_oriented(path: str | Path, unchanged: bool = True) -> OrientedImage:
    """Read an image file with :func:`decode_oriented` (pixels upright, orientation applied).

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
    except MemoryError:
        raise InputFileError(file, "not enough memory to read this file") from None
    return decode_oriented(data, file, unchanged)


def read_image(path: str | Path, unchanged: bool = True) -> npt.NDArray[Any]:
    """Read an image file with :func:`decode_oriented` (BGR, upright; 16-bit kept when
    ``unchanged``).

    Raises
    ------
    InputFileError
        If the file is missing, unreadable, too large or cannot be decoded.
    """
    return read_oriented(path, unchanged).pixels
