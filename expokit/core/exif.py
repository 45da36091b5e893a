"""EXIF tags of image files (one wrapper around ``exifread``).

``exifread`` raises many exception types on odd containers and logs a warning for every
tag it cannot parse; callers want "the tags, or none", so this module is the only place
that calls it.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any


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
