"""Image file reading with clear errors (OpenCV returns ``None`` instead of raising)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.core.errors import InputFileError


def read_image(path: str | Path, unchanged: bool = True) -> npt.NDArray[Any]:
    """Read an image with OpenCV (BGR order; 16-bit kept when ``unchanged``).

    Raises
    ------
    InputFileError
        If the file is missing or cannot be decoded.
    """
    import cv2

    file = Path(path)
    if not file.is_file():
        raise InputFileError(file, "no such image file")
    image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED if unchanged else cv2.IMREAD_COLOR)
    if image is None:
        raise InputFileError(file, "not a readable image (OpenCV could not decode it)")
    return np.asarray(image)
