"""Calibration targets: a typed board description and detection with fixed output shapes.

Two kinds of board are supported:

``charuco``
    A chessboard whose white squares hold ArUco markers (``cv2.aruco.CharucoBoard``). Every
    corner has an id, so partial views and correspondences between cameras are unambiguous,
    and the markers are chiral: a mirrored view detects no marker, which is what makes the
    board a mirror detector (:mod:`expokit.calibration.mirror`).
``chessboard``
    A plain chessboard (``cv2.findChessboardCorners``). The whole board must be visible. Its
    corner grid is symmetric under a 180° rotation, so the corner order of two views may be
    reversed; :mod:`expokit.calibration.geometry` resolves that from the image content.

Sizes follow OpenCV's conventions: ChArUco boards are given in *squares*
(``CharucoBoard((5, 7), ...)``), chessboards in *inner corners* (``(9, 6)``).

OpenCV 5 ``CharucoDetector.detectBoard`` returns corners ``(N, 2)`` and ids ``(N,)``, OpenCV
4.x returns ``(N, 1, 2)`` and ``(N, 1)``; :func:`normalise_charuco` makes both ``(N, 2)``
float32 and ``(N,)`` int32.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.core.errors import InputFileError

BOARD_KINDS: tuple[str, ...] = ("charuco", "chessboard")
#: ChArUco dictionaries accepted by name (``cv2.aruco.DICT_*``); checked against cv2 on use.
DEFAULT_DICTIONARY = "DICT_6X6_250"

# cornerSubPix settings of OpenCV's stereo_calib sample: an 11x11 window refines corners of
# boards whose squares are >= ~12 px; the measured RMS values in the field notes use them.
_SUBPIX_WINDOW = (11, 11)


class BoardNotFoundError(InputFileError):
    """The calibration board was not detected in an image (or in any of several)."""


@dataclass(frozen=True)
class BoardSpec:
    """A calibration board.

    Attributes
    ----------
    kind
        ``"charuco"`` or ``"chessboard"``.
    columns, rows
        ChArUco: number of squares across and down. Chessboard: number of *inner corners*
        across and down (OpenCV's ``patternSize``), e.g. ``9 x 6``.
    square_size
        Side of one square in any length unit (metres by convention); scales the intrinsics'
        extrinsics only, never pixel errors.
    marker_size
        ChArUco only: side of one ArUco marker in the same unit (< ``square_size``).
    dictionary
        ChArUco only: ``cv2.aruco`` predefined dictionary name, e.g. ``"DICT_6X6_250"``.
    legacy_pattern
        ChArUco only: boards printed with OpenCV < 4.6 and an even number of rows use the old
        layout (``CharucoBoard.setLegacyPattern``).
    """

    kind: str
    columns: int
    rows: int
    square_size: float = 1.0
    marker_size: float | None = None
    dictionary: str = DEFAULT_DICTIONARY
    legacy_pattern: bool = False

    def __post_init__(self) -> None:
        if self.kind not in BOARD_KINDS:
            raise ValueError(
                f"board kind must be one of {', '.join(BOARD_KINDS)}, got {self.kind!r}"
            )
        least = 2 if self.kind == "charuco" else 3
        if self.columns < least or self.rows < least:
            unit = "squares" if self.kind == "charuco" else "inner corners"
            raise ValueError(
                f"a {self.kind} needs at least {least}x{least} {unit}, "
                f"got {self.columns}x{self.rows}"
            )
        if not (np.isfinite(self.square_size) and self.square_size > 0):
            raise ValueError(f"square size must be > 0, got {self.square_size}")
        if self.kind == "charuco":
            if self.marker_size is None:
                raise ValueError("a ChArUco board needs a marker size")
            if not (0 < self.marker_size < self.square_size):
                raise ValueError(
                    f"marker size must be in (0, square size {self.square_size:g}), "
                    f"got {self.marker_size:g}"
                )
            if not re.fullmatch(r"DICT_[A-Z0-9_]+", self.dictionary):
                raise ValueError(f"not an ArUco dictionary name: {self.dictionary!r}")
        else:
            if self.marker_size is not None:
                raise ValueError("a chessboard has no markers (marker size must be None)")
            if self.columns == self.rows:
                # A square inner-corner grid is symmetric under 90° rotations too, so the
                # corner order of two views cannot be matched reliably.
                raise ValueError(
                    f"a square {self.columns}x{self.rows} chessboard is ambiguous under "
                    "rotation; use one with different counts, e.g. 9x6"
                )

    @classmethod
    def charuco(
        cls,
        columns: int = 5,
        rows: int = 7,
        square_size: float = 0.04,
        marker_size: float = 0.02,
        dictionary: str = DEFAULT_DICTIONARY,
        legacy_pattern: bool = False,
    ) -> BoardSpec:
        """A ChArUco board (defaults: OpenCV's tutorial board, 5x7 squares, DICT_6X6_250).

        The rig guide and the simulator use ``charuco(7, 5, 0.04, 0.028)``.
        """
        return cls("charuco", columns, rows, square_size, marker_size, dictionary, legacy_pattern)

    @classmethod
    def chessboard(cls, columns: int = 9, rows: int = 6, square_size: float = 1.0) -> BoardSpec:
        """A chessboard given by its inner corners (default 9x6, OpenCV's samples)."""
        return cls("chessboard", columns, rows, square_size)

    @classmethod
    def parse(
        cls,
        kind: str,
        text: str,
        square_size: float,
        marker_size: float | None = None,
        dictionary: str = DEFAULT_DICTIONARY,
    ) -> BoardSpec:
        """Build a spec from command-line text such as ``"9x6"`` (chessboard) or ``"7x5"``."""
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
        if not match:
            raise ValueError(f"board size must look like 9x6, got {text!r}")
        columns, rows = int(match[1]), int(match[2])
        if kind == "charuco":
            return cls.charuco(
                columns, rows, square_size, marker_size or square_size / 2, dictionary
            )
        return cls.chessboard(columns, rows, square_size)

    @property
    def corner_count(self) -> int:
        """Number of corners of the whole board (ChArUco: inner corners of the squares)."""
        if self.kind == "charuco":
            return (self.columns - 1) * (self.rows - 1)
        return self.columns * self.rows

    def object_points(self) -> npt.NDArray[np.float32]:
        """Board-frame coordinates of every corner, shape ``(corner_count, 3)``, float32.

        Row-major (x fastest), z = 0, in units of :attr:`square_size`; index ``i`` is corner id
        ``i`` for both kinds (ChArUco ids and ``findChessboardCorners`` order agree).
        """
        cols = self.columns - 1 if self.kind == "charuco" else self.columns
        rows = self.rows - 1 if self.kind == "charuco" else self.rows
        grid = np.zeros((cols * rows, 3), np.float32)
        grid[:, :2] = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) * self.square_size
        if self.kind == "charuco":
            grid[:, :2] += self.square_size  # ChArUco corner 0 is one square in from the edge
        return grid

    def describe(self) -> str:
        """Short human-readable description used in messages."""
        if self.kind == "charuco":
            return (
                f"ChArUco {self.columns}x{self.rows} squares ({self.dictionary}, square "
                f"{self.square_size:g}, marker {self.marker_size:g})"
            )
        return f"chessboard {self.columns}x{self.rows} inner corners"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "columns": self.columns,
            "rows": self.rows,
            "square_size": self.square_size,
            "marker_size": self.marker_size,
            "dictionary": self.dictionary if self.kind == "charuco" else None,
            "legacy_pattern": self.legacy_pattern,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BoardSpec:
        return cls(
            kind=str(data["kind"]),
            columns=int(data["columns"]),
            rows=int(data["rows"]),
            square_size=float(data["square_size"]),
            marker_size=None if data.get("marker_size") is None else float(data["marker_size"]),
            dictionary=str(data.get("dictionary") or DEFAULT_DICTIONARY),
            legacy_pattern=bool(data.get("legacy_pattern", False)),
        )


@dataclass(frozen=True)
class BoardDetection:
    """Board corners found in one image.

    Attributes
    ----------
    image_points
        Shape ``(N, 2)``, float32, pixel coordinates (x, y) in the image that was searched.
    ids
        Shape ``(N,)``, int32, corner ids (index into :meth:`BoardSpec.object_points`).
    object_points
        Shape ``(N, 3)``, float32, the matching board-frame coordinates.
    markers
        ChArUco: number of ArUco markers detected; chessboard: 0.
    """

    image_points: npt.NDArray[np.float32]
    ids: npt.NDArray[np.int32]
    object_points: npt.NDArray[np.float32]
    markers: int = 0

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def normalise_charuco(
    corners: Any, ids: Any
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """Make ``detectBoard`` output the same on every OpenCV version.

    Parameters
    ----------
    corners
        ``None``, ``(N, 2)`` (OpenCV 5) or ``(N, 1, 2)`` (OpenCV 4.x) corner coordinates.
    ids
        ``None``, ``(N,)`` (OpenCV 5) or ``(N, 1)`` (OpenCV 4.x) corner ids.

    Returns
    -------
    tuple
        ``(corners, ids)``: ``(N, 2)`` float32 and ``(N,)`` int32; ``N = 0`` when nothing was
        found.

    Raises
    ------
    ValueError
        If the two disagree in length.
    """
    if corners is None or ids is None:
        return np.zeros((0, 2), np.float32), np.zeros((0,), np.int32)
    points = np.asarray(corners, dtype=np.float32).reshape(-1, 2)
    labels = np.asarray(ids).reshape(-1).astype(np.int32)
    if points.shape[0] != labels.shape[0]:
        raise ValueError(f"{points.shape[0]} ChArUco corners but {labels.shape[0]} ids")
    return points, labels


def _charuco_detector(spec: BoardSpec) -> Any:
    import cv2

    code = getattr(cv2.aruco, spec.dictionary, None)
    if not isinstance(code, int):
        raise ValueError(f"unknown ArUco dictionary {spec.dictionary!r}")
    dictionary = cv2.aruco.getPredefinedDictionary(code)
    assert spec.marker_size is not None  # checked by BoardSpec
    board = cv2.aruco.CharucoBoard(
        (spec.columns, spec.rows), spec.square_size, spec.marker_size, dictionary
    )
    if spec.legacy_pattern:
        board.setLegacyPattern(True)
    return cv2.aruco.CharucoDetector(board)


def to_uint8_for_detection(gray: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Stretch a grayscale image to full 8-bit range (0.5/99.5 % percentiles).

    Board detectors threshold adaptively but still fail on images 2-3 EV under-exposed, where
    the whole board spans a few dozen grey levels; a monotonic stretch restores the contrast
    without moving any edge.

    Parameters
    ----------
    gray
        Shape ``(H, W)``, any numeric dtype.
    """
    values = np.asarray(gray, dtype=np.float32)
    lo, hi = np.percentile(values, (0.5, 99.5))
    if hi - lo < 1e-6:
        return np.zeros(values.shape, np.uint8)
    out = (values - lo) * (255.0 / (hi - lo))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def detect_board(
    gray: npt.NDArray[Any], spec: BoardSpec, min_corners: int = 6
) -> BoardDetection | None:
    """Find ``spec`` in one grayscale image.

    Parameters
    ----------
    gray
        Shape ``(H, W)``; uint8, uint16 or float (stretched to 8 bits internally, see
        :func:`to_uint8_for_detection`).
    spec
        The board.
    min_corners
        ChArUco views with fewer identified corners count as "not found" (a homography needs
        4, and a few more make the fit robust).

    Returns
    -------
    BoardDetection or None
        ``None`` when the board is not found.
    """
    import cv2

    image = gray if gray.dtype == np.uint8 else to_uint8_for_detection(gray)
    if spec.kind == "charuco":
        detector = _charuco_detector(spec)
        corners, ids, _marker_corners, marker_ids = detector.detectBoard(image)
        points, labels = normalise_charuco(corners, ids)
        if len(labels) < max(min_corners, 4):
            return None
        markers = 0 if marker_ids is None else int(np.asarray(marker_ids).size)
        return BoardDetection(points, labels, spec.object_points()[labels], markers)

    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    found, corners = cv2.findChessboardCorners(image, (spec.columns, spec.rows), flags=flags)
    if not found or corners is None:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    refined = cv2.cornerSubPix(image, corners, _SUBPIX_WINDOW, (-1, -1), criteria)
    points = np.asarray(refined, dtype=np.float32).reshape(-1, 2)
    labels = np.arange(points.shape[0], dtype=np.int32)
    return BoardDetection(points, labels, spec.object_points(), 0)


def transposed_hint(
    grays: Sequence[npt.NDArray[Any]], spec: BoardSpec, min_corners: int = 6
) -> str:
    """A hint for "board not found" errors when the board is there with columns and rows swapped.

    A ChArUco board given as ``5x7`` is not detected in an image of a ``7x5`` board (its
    markers sit in other places), and the message alone does not say why. This tries the
    transposed size on ``grays`` (callers pass a few images: each try is one detection).
    Chessboards are not tried: ``findChessboardCorners`` finds ``9x6`` and ``6x9`` alike.

    Returns
    -------
    str
        ``"; board not found as 5x7; it is found as 7x5: use --charuco 7x5"``, or ``""``
        when the transposed board is not found either (or the board is square).
    """
    if spec.kind != "charuco" or spec.columns == spec.rows:
        return ""
    other = replace(spec, columns=spec.rows, rows=spec.columns)
    for gray in grays:
        if detect_board(gray, other, min_corners) is not None:
            given, found = f"{spec.columns}x{spec.rows}", f"{other.columns}x{other.rows}"
            return (
                f"; board not found as {given}; it is found as {found}: use --{spec.kind} {found}"
            )
    return ""


def require_board(
    detections: list[BoardDetection | None],
    paths: list[Path],
    spec: BoardSpec,
    role: str,
    grays: Sequence[npt.NDArray[Any]] = (),
    min_corners: int = 6,
) -> None:
    """Raise :class:`BoardNotFoundError` naming the files when no view shows the board.

    ``grays`` (a few of the searched images) are tried with the transposed board size, so
    that the error can say "use --charuco 7x5" (:func:`transposed_hint`).
    """
    if any(d is not None for d in detections):
        return
    names = ", ".join(p.name for p in paths[:5]) + (" ..." if len(paths) > 5 else "")
    where = f"the {role} image" if len(paths) == 1 else f"any of the {len(paths)} {role} images"
    hint = transposed_hint(grays, spec, min_corners)
    raise BoardNotFoundError(paths[0], f"{spec.describe()} not found in {where} ({names}){hint}")
