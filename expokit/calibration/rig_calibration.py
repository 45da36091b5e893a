"""``rig_calibration.json``: the typed record, its one reader and its one writer.

:class:`RigCalibration` is the content of the file (format version :data:`FORMAT_VERSION`);
:func:`read_rig_calibration` is the only code that parses the file and
:func:`write_rig_calibration` the only code that writes it (atomically). Every field is
validated on load: a problem raises :class:`RigCalibrationFormatError`, whose message names the
file and the field (``rig_calibration.json: field 'homography': ...``).

The on-disk format (JSON object, key-sorted, indented) is unchanged from the first version:
files written by earlier expokit releases read as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from expokit.calibration.boards import BoardSpec
from expokit.calibration.intrinsics import Intrinsics
from expokit.calibration.mirror import Flip, MirrorDecision
from expokit.core.atomic import atomic_write_json
from expokit.core.errors import InputFileError

F64 = npt.NDArray[np.float64]
Size = tuple[int, int]
T = TypeVar("T")
_UNSET: Any = object()

#: Version of ``rig_calibration.json``; bump when a field changes meaning.
FORMAT_VERSION = 1
RIG_CALIBRATION_NAME = "rig_calibration.json"
#: Values of :attr:`RigCalibration.method`.
METHODS: tuple[str, ...] = ("charuco", "chessboard", "features")


class RigCalibrationFormatError(InputFileError):
    """``rig_calibration.json`` is missing, malformed, of another format version, or has a
    missing or invalid field (the message names the file and the field)."""


def _opt_dict(value: Intrinsics | BoardSpec | None) -> dict[str, Any] | None:
    return None if value is None else value.to_dict()


def _check_matrix(name: str, value: Any) -> F64:
    """``value`` as a finite ``(3, 3)`` float64 matrix, else ``ValueError`` naming ``name``."""
    try:
        matrix = np.asarray(value, np.float64)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must be a 3x3 matrix of numbers, got {value!r}") from None
    if matrix.shape != (3, 3):
        raise ValueError(f"{name} must be a 3x3 matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{name} must be finite (it holds NaN or infinity)")
    return matrix


@dataclass(frozen=True)
class PairRecord:
    """Provenance and per-pair evidence for one (reference, test) image pair.

    Attributes
    ----------
    reference, test
        Paths of the two images as given to the calibration.
    reference_sha256, test_sha256
        Hex SHA-256 of the two image files.
    board_corners_reference, board_corners_test
        Board corners detected in each image (``None`` without a board).
    correspondences, inliers
        Point correspondences of the pair, and homography inliers among them (counts >= 0).
    board_order
        Chessboard corner order chosen (``"as detected"`` / ``"reversed"``) or ``None``.
    correlation
        ECC correlation coefficient in ``[-1, 1]`` of the aligned pair (QA scale), or ``None``.
    """

    reference: str
    reference_sha256: str
    test: str
    test_sha256: str
    board_corners_reference: int | None = None
    board_corners_test: int | None = None
    correspondences: int = 0
    inliers: int = 0
    board_order: str | None = None
    correlation: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RigCalibration:
    """Geometry of a two-camera rig (the content of ``rig_calibration.json``).

    Attributes
    ----------
    homography
        ``(3, 3)`` float64, finite: flipped + undistorted test pixels -> undistorted reference
        pixels, ``H[2, 2] = 1``.
    initial_homography
        ``(3, 3)`` float64: the board/feature estimate before ECC.
    flip, mirror
        The flip applied to raw test images and how it was decided.
    method
        Source of the initial homography: ``"charuco"``, ``"chessboard"`` or ``"features"``.
    correspondences, inliers
        Point correspondences used and homography inliers among them (all pairs).
    reprojection_rms, initial_reprojection_rms
        RMS transfer error (reference pixels, >= 0) of the inlier correspondences under the
        final / initial homography. It measures agreement with the board corners or
        features, not accuracy: the initial fit minimises it, so ECC may raise it when the
        features are biased (graf1 -> graf3, strong viewpoint change: 1.24 -> 2.44 px while
        the error against the ground truth halves; the ground truth itself scores 3.5 px).
    ecc
        :meth:`~expokit.calibration.homography.EccResult.to_dict` (motion, correlations,
        every attempt) plus the keep decision, or ``None``.
    valid_region
        ``(x, y, width, height)`` in raw reference pixels: the largest axis-aligned
        rectangle of the raw reference frame fully covered by the warped test image.
    reference_size, test_size
        ``(width, height)`` of the raw images, pixels.
    reference_intrinsics, test_intrinsics, stereo_rms
        Optional camera models and the stereo RMS reprojection error (px).
    board
        The board spec, if any.
    pairs
        Per-pair inputs (paths, sha256) and evidence.
    qa_images
        File names of the QA images written next to the JSON.
    config
        The :class:`~expokit.calibration.geometry.GeometryConfig` used, as a dict.
    parallax
        ``None``, or a second depth layer the alignment leaves more than the config's
        ``max_parallax_px`` off (:class:`~expokit.calibration.parallax.ParallaxLayers` as a
        dict, with the ``pair`` it was seen in): a homography aligns one depth only.
    software, created_at, format_version
        Provenance: versions, ISO 8601 UTC time, file format version.
    """

    homography: F64
    initial_homography: F64
    flip: Flip
    mirror: MirrorDecision
    method: str
    correspondences: int
    inliers: int
    reprojection_rms: float
    initial_reprojection_rms: float
    ecc: dict[str, Any] | None
    valid_region: tuple[int, int, int, int]
    reference_size: Size
    test_size: Size
    reference_intrinsics: Intrinsics | None = None
    test_intrinsics: Intrinsics | None = None
    stereo_rms: float | None = None
    board: BoardSpec | None = None
    pairs: tuple[PairRecord, ...] = ()
    qa_images: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    parallax: dict[str, Any] | None = None
    software: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # Invariants of records built in code; files are checked field by field on load.
        object.__setattr__(self, "homography", _check_matrix("homography", self.homography))
        object.__setattr__(
            self,
            "initial_homography",
            _check_matrix("initial_homography", self.initial_homography),
        )
        if not isinstance(self.flip, Flip):
            raise ValueError(f"flip must be a Flip, got {self.flip!r}")
        for name in ("reference_size", "test_size"):
            size = getattr(self, name)
            if len(size) != 2 or min(size) <= 0:
                raise ValueError(f"{name} must be (width, height) > 0, got {size!r}")

    @property
    def ecc_correlation(self) -> float | None:
        return None if self.ecc is None else float(self.ecc["correlation"])

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``rig_calibration.json`` (plain lists, numbers, strings)."""
        return {
            "format_version": self.format_version,
            "created_at": self.created_at,
            "software": dict(self.software),
            "flip": self.flip.value,
            "mirror": self.mirror.to_dict(),
            "method": self.method,
            "homography": np.asarray(self.homography).tolist(),
            "initial_homography": np.asarray(self.initial_homography).tolist(),
            "correspondences": self.correspondences,
            "inliers": self.inliers,
            "reprojection_rms": self.reprojection_rms,
            "initial_reprojection_rms": self.initial_reprojection_rms,
            "ecc": self.ecc,
            "valid_region": list(self.valid_region),
            "reference_size": list(self.reference_size),
            "test_size": list(self.test_size),
            "reference_intrinsics": _opt_dict(self.reference_intrinsics),
            "test_intrinsics": _opt_dict(self.test_intrinsics),
            "stereo_rms": self.stereo_rms,
            "board": _opt_dict(self.board),
            "pairs": [p.to_dict() for p in self.pairs],
            "qa_images": list(self.qa_images),
            "config": self.config,
            "parallax": self.parallax,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], path: str | Path = RIG_CALIBRATION_NAME
    ) -> RigCalibration:
        """Inverse of :meth:`to_dict`, every field validated.

        Raises
        ------
        RigCalibrationFormatError
            Naming ``path`` and the first missing or invalid field.
        """
        return _Fields(Path(path), data).record()


# --------------------------------------------------------------------------- parsing


class _Fields:
    """Typed access to the fields of one loaded file; every error names file and field."""

    def __init__(self, path: Path, data: Mapping[str, Any]) -> None:
        self.path = path
        self.data = data

    def fail(self, name: str, problem: str) -> RigCalibrationFormatError:
        return RigCalibrationFormatError(self.path, f"field {name!r}: {problem}")

    def get(self, name: str, required: bool = True, default: Any = None) -> Any:
        if name not in self.data:
            if required:
                raise self.fail(name, "missing")
            return default
        return self.data[name]

    def integer(self, name: str, value: Any = _UNSET, minimum: int | None = 0) -> int:
        value = self.get(name) if value is _UNSET else value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be an integer, got {type(value).__name__} {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(name, f"must be >= {minimum}, got {value}")
        return value

    def number(self, name: str, value: Any = _UNSET, optional: bool = False) -> float | None:
        value = self.get(name, required=not optional) if value is _UNSET else value
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise self.fail(name, f"must be finite, got {value!r}")
        return float(value)

    def rms(self, name: str) -> float:
        value = self.number(name)
        assert value is not None  # required
        if value < 0:
            raise self.fail(name, f"must be >= 0 px, got {value}")
        return value

    def text(self, name: str, required: bool = True, default: str = "") -> str:
        value = self.get(name, required, default)
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {type(value).__name__} {value!r}")
        return value

    def ints(self, name: str, count: int, minimum: int) -> tuple[int, ...]:
        value = self.get(name)
        if not isinstance(value, list) or len(value) != count:
            raise self.fail(name, f"must be a list of {count} integers, got {value!r}")
        return tuple(self.integer(f"{name}[{i}]", v, minimum) for i, v in enumerate(value))

    def matrix(self, name: str) -> F64:
        value = self.get(name)
        try:
            return _check_matrix(name, value)
        except (ValueError, TypeError) as exc:
            raise self.fail(name, str(exc).removeprefix(f"{name} ")) from None

    def mapping(self, name: str, optional: bool = False) -> dict[str, Any] | None:
        value = self.get(name, required=not optional)
        if value is None and optional:
            return None
        if not isinstance(value, dict):
            raise self.fail(name, f"must be a JSON object, got {type(value).__name__}")
        return value

    def nested(self, name: str, parse: Callable[[dict[str, Any]], T]) -> T | None:
        value = self.mapping(name, optional=True)
        if value is None:
            return None
        try:
            return parse(value)
        except KeyError as exc:
            raise self.fail(name, f"missing entry {exc}") from None
        except (ValueError, TypeError, IndexError) as exc:
            raise self.fail(name, f"invalid ({exc})") from None

    def flip(self) -> Flip:
        value = self.get("flip")
        choices = ", ".join(repr(f.value) for f in Flip)
        if not isinstance(value, str):
            raise self.fail("flip", f"must be a string ({choices}), got {value!r}")
        try:
            return Flip(value)
        except ValueError:
            raise self.fail("flip", f"must be one of {choices}, got {value!r}") from None

    def pairs(self) -> tuple[PairRecord, ...]:
        value = self.get("pairs", required=False, default=[])
        if not isinstance(value, list):
            raise self.fail("pairs", f"must be a list, got {type(value).__name__}")
        known = {f.name for f in fields(PairRecord)}
        records = []
        for i, item in enumerate(value):
            name = f"pairs[{i}]"
            if not isinstance(item, dict):
                raise self.fail(name, f"must be a JSON object, got {type(item).__name__}")
            extra = sorted(set(item) - known)
            if extra:
                raise self.fail(name, f"unknown entries {extra}")
            missing = sorted(
                k for k in ("reference", "reference_sha256", "test", "test_sha256") if k not in item
            )
            if missing:
                raise self.fail(name, f"missing entries {missing}")
            for key, value in item.items():
                self._check_pair_entry(f"{name}.{key}", key, value)
            records.append(PairRecord(**item))
        return tuple(records)

    def _check_pair_entry(self, name: str, key: str, value: Any) -> None:
        if key in ("reference", "reference_sha256", "test", "test_sha256"):
            if not isinstance(value, str):
                raise self.fail(name, f"must be a string, got {value!r}")
        elif key == "board_order":
            if value is not None and not isinstance(value, str):
                raise self.fail(name, f"must be a string or null, got {value!r}")
        elif key == "correlation":
            if value is not None:
                self.number(name, value)
        elif value is not None or key in ("correspondences", "inliers"):
            self.integer(name, value)

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.get(name, required=False, default=[])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, f"must be a list of strings, got {value!r}")
        return tuple(value)

    def record(self) -> RigCalibration:
        method = self.text("method")
        if method not in METHODS:
            raise self.fail("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
        x, y, w, h = self.ints("valid_region", 4, 0)
        rw, rh = self.ints("reference_size", 2, 1)
        tw, th = self.ints("test_size", 2, 1)
        flip = self.flip()
        self.mapping("mirror")  # required, unlike the other nested objects
        mirror = self.nested("mirror", MirrorDecision.from_dict)
        assert mirror is not None
        software = self.mapping("software", optional=True) or {}
        return RigCalibration(
            homography=self.matrix("homography"),
            initial_homography=self.matrix("initial_homography"),
            flip=flip,
            mirror=mirror,
            method=method,
            correspondences=self.integer("correspondences"),
            inliers=self.integer("inliers"),
            reprojection_rms=self.rms("reprojection_rms"),
            initial_reprojection_rms=self.rms("initial_reprojection_rms"),
            ecc=self.mapping("ecc", optional=True),
            valid_region=(x, y, w, h),
            reference_size=(rw, rh),
            test_size=(tw, th),
            reference_intrinsics=self.nested("reference_intrinsics", Intrinsics.from_dict),
            test_intrinsics=self.nested("test_intrinsics", Intrinsics.from_dict),
            stereo_rms=self.number("stereo_rms", optional=True),
            board=self.nested("board", BoardSpec.from_dict),
            pairs=self.pairs(),
            qa_images=self.strings("qa_images"),
            config=self.mapping("config", optional=True) or {},
            parallax=self.mapping("parallax", optional=True),
            software={str(k): str(v) for k, v in software.items()},
            created_at=self.text("created_at", required=False),
            format_version=self.integer("format_version"),
        )


# --------------------------------------------------------------------------- I/O


def rig_calibration_file(path: str | Path) -> Path:
    """``path`` itself, or ``path / rig_calibration.json`` when ``path`` is a folder."""
    file = Path(path)
    return file / RIG_CALIBRATION_NAME if file.is_dir() else file


def read_rig_calibration(path: str | Path) -> RigCalibration:
    """Read and validate ``rig_calibration.json`` (or the one in folder ``path``).

    Parameters
    ----------
    path
        The JSON file, or a folder holding :data:`RIG_CALIBRATION_NAME`.

    Returns
    -------
    RigCalibration
        The record; ``homography`` is a finite ``(3, 3)`` float64 array.

    Raises
    ------
    RigCalibrationFormatError
        Missing file ("no such file"), unreadable or non-JSON content ("not a JSON file"), a
        top level that is not a JSON object, no ``format_version`` or one other than
        :data:`FORMAT_VERSION` (the message names the version found), or a missing or
        invalid field (the message names it: ``field 'homography': ...``).
    """
    file = rig_calibration_file(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RigCalibrationFormatError(file, "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RigCalibrationFormatError(
            file, f"not a readable rig calibration: not a JSON file ({exc})"
        ) from None
    if not isinstance(data, dict):
        raise RigCalibrationFormatError(
            file,
            f"not a rig calibration: the top level is a JSON {type(data).__name__}, "
            "expected an object",
        )
    if "format_version" not in data:
        raise RigCalibrationFormatError(file, "not a rig calibration (no format_version)")
    found = data["format_version"]
    if isinstance(found, bool) or found != FORMAT_VERSION:
        raise RigCalibrationFormatError(
            file,
            f"field 'format_version': rig calibration format_version {found!r} is not "
            f"supported (this expokit reads version {FORMAT_VERSION})",
        )
    return RigCalibration.from_dict(data, file)


def write_rig_calibration(record: RigCalibration, path: str | Path) -> Path:
    """Write ``record`` to ``path`` (a file, or a folder to hold ``rig_calibration.json``)
    atomically: a reader sees the old file or the complete new one.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OutputError
        The file cannot be written (read-only, disk full, ...).
    """
    file = rig_calibration_file(path)
    atomic_write_json(file, record.to_dict())
    return file


def recorded_qa_images(path: str | Path) -> tuple[str, ...]:
    """QA image names listed by the ``rig_calibration.json`` at ``path`` (or in that folder),
    leniently: ``()`` when the file is missing, unreadable or malformed (an earlier run's
    record is only a hint of what to clean up, never a reason to fail)."""
    file = rig_calibration_file(path)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return ()
    names = data.get("qa_images") if isinstance(data, dict) else None
    if not isinstance(names, list):
        return ()
    return tuple(n for n in names if isinstance(n, str))
