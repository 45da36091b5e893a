"""Per-camera intrinsics and lens distortion from board views, and undistortion.

``cv2.calibrateCamera`` with OpenCV's default model (``k1, k2, p1, p2, k3``) on board corners
from several views; the RMS reprojection error it returns is recorded. Undistortion keeps the
camera matrix (``newCameraMatrix = K``), so undistorted pixel coordinates stay comparable with
the original ones and the homography is estimated between undistorted images.

Intrinsics can also be read from OpenCV's calibration files (YAML/XML with
``camera_matrix`` and ``distortion_coefficients``, e.g. ``tutorial_camera_charuco.yml``) or
from an expokit JSON object (:meth:`Intrinsics.to_dict`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit.calibration.boards import BoardDetection
from expokit.core.errors import ExpokitError, InputFileError

log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
Size = tuple[int, int]

#: calibrateCamera needs several views with different board poses to separate focal length
#: from distance; three is OpenCV's practical minimum, ten or more is recommended.
MIN_VIEWS = 3
MIN_POINTS_PER_VIEW = 6


class IntrinsicsError(ExpokitError):
    """Intrinsics cannot be estimated (too few usable board views) or are unusable."""


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera with distortion, in pixels.

    Attributes
    ----------
    camera_matrix
        ``(3, 3)`` float64 ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
    dist_coeffs
        ``(K,)`` float64 OpenCV distortion coefficients ``(k1, k2, p1, p2[, k3, ...])``.
    image_size
        ``(width, height)`` the model was estimated for.
    rms
        RMS reprojection error of the calibration in pixels (``None`` when loaded from a file
        that does not say).
    views
        Number of board views used (0 when loaded from a file).
    source
        ``"calibrated"`` or the file it was loaded from.
    """

    camera_matrix: F64
    dist_coeffs: F64
    image_size: Size
    rms: float | None = None
    views: int = 0
    source: str = "calibrated"

    def __post_init__(self) -> None:
        k = np.asarray(self.camera_matrix, np.float64).reshape(3, 3)
        d = np.asarray(self.dist_coeffs, np.float64).reshape(-1)
        if not (np.all(np.isfinite(k)) and np.all(np.isfinite(d))):
            raise ValueError("intrinsics contain NaN or infinity")
        if k[0, 0] <= 0 or k[1, 1] <= 0:
            raise ValueError(f"focal lengths must be > 0, got {k[0, 0]:g}, {k[1, 1]:g}")
        if d.size not in (4, 5, 8, 12, 14):
            raise ValueError(
                f"OpenCV takes 4, 5, 8, 12 or 14 distortion coefficients, got {d.size}"
            )
        object.__setattr__(self, "camera_matrix", k)
        object.__setattr__(self, "dist_coeffs", d)
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera_matrix": self.camera_matrix.tolist(),
            "dist_coeffs": self.dist_coeffs.tolist(),
            "image_size": list(self.image_size),
            "rms": self.rms,
            "views": self.views,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Intrinsics:
        return cls(
            camera_matrix=np.asarray(data["camera_matrix"], np.float64),
            dist_coeffs=np.asarray(data["dist_coeffs"], np.float64),
            image_size=(int(data["image_size"][0]), int(data["image_size"][1])),
            rms=None if data.get("rms") is None else float(data["rms"]),
            views=int(data.get("views", 0)),
            source=str(data.get("source", "calibrated")),
        )


def load_intrinsics(path: str | Path) -> Intrinsics:
    """Read intrinsics from an OpenCV YAML/XML calibration file or an expokit JSON file.

    OpenCV files need ``camera_matrix`` and ``distortion_coefficients`` (``image_width``,
    ``image_height`` and ``avg_reprojection_error`` are used when present).

    Raises
    ------
    InputFileError
        Missing file, unreadable file, or missing/invalid entries.
    """
    file = Path(path)
    if not file.is_file():
        raise InputFileError(file, "no such intrinsics file")
    try:
        if file.suffix.lower() == ".json":
            data = json.loads(file.read_text(encoding="utf-8"))
            if "camera_matrix" not in data and "intrinsics" in data:
                data = data["intrinsics"]
            intr = Intrinsics.from_dict(data)
            return Intrinsics(
                intr.camera_matrix,
                intr.dist_coeffs,
                intr.image_size,
                intr.rms,
                intr.views,
                str(file),
            )
        return _load_opencv_storage(file)
    except InputFileError:
        raise
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise InputFileError(file, f"not a usable intrinsics file ({exc})") from exc


def _load_opencv_storage(file: Path) -> Intrinsics:
    import cv2

    try:
        storage = cv2.FileStorage(str(file), cv2.FILE_STORAGE_READ)
    except cv2.error as exc:
        raise InputFileError(file, "not an OpenCV YAML/XML file") from exc
    try:
        if not storage.isOpened():
            raise InputFileError(file, "not an OpenCV YAML/XML file")
        k = storage.getNode("camera_matrix").mat()
        d = storage.getNode("distortion_coefficients").mat()
        if k is None or d is None:
            raise InputFileError(file, "needs camera_matrix and distortion_coefficients")
        width = storage.getNode("image_width")
        height = storage.getNode("image_height")
        size = (int(width.real()), int(height.real())) if not width.empty() else (0, 0)
        err = storage.getNode("avg_reprojection_error")
        rms = None if err.empty() else float(err.real())
    finally:
        storage.release()
    return Intrinsics(np.asarray(k), np.asarray(d), size, rms, 0, str(file))


def calibrate_intrinsics(
    detections: list[BoardDetection], image_size: Size, role: str = "camera"
) -> Intrinsics:
    """``cv2.calibrateCamera`` on board views.

    Parameters
    ----------
    detections
        Board corners of each view (views with fewer than 6 corners are skipped).
    image_size
        ``(width, height)`` of every view.
    role
        Used in messages (``"reference"``/``"test"``).

    Raises
    ------
    IntrinsicsError
        Fewer than :data:`MIN_VIEWS` usable views, or a non-finite result.
    """
    import cv2

    usable = [d for d in detections if len(d) >= MIN_POINTS_PER_VIEW]
    if len(usable) < MIN_VIEWS:
        raise IntrinsicsError(
            f"{role} intrinsics need the board in at least {MIN_VIEWS} views, "
            f"found it in {len(usable)}"
        )
    objects = [d.object_points.reshape(-1, 1, 3) for d in usable]
    images = [d.image_points.reshape(-1, 1, 2) for d in usable]
    rms, k, dist, _r, _t = cv2.calibrateCamera(objects, images, image_size, None, None)
    if not (np.isfinite(rms) and np.all(np.isfinite(k)) and np.all(np.isfinite(dist))):
        raise IntrinsicsError(f"{role} intrinsics: calibrateCamera returned non-finite values")
    log.info("%s intrinsics from %d views: RMS %.3f px", role, len(usable), rms)
    return Intrinsics(
        np.asarray(k, np.float64),
        np.asarray(dist, np.float64).reshape(-1),
        image_size,
        float(rms),
        len(usable),
    )


def board_reprojection_error(
    detection: BoardDetection, intrinsics: Intrinsics
) -> tuple[float, float]:
    """RMS and mean reprojection error (px) of one board view with given intrinsics.

    The board pose is estimated by ``solvePnP`` (iterative, Levenberg-Marquardt), then the
    board corners are projected with the intrinsics and compared with the detections.
    """
    import cv2

    if len(detection) < 4:
        raise ValueError("a board pose needs at least 4 corners")
    obj = detection.object_points.reshape(-1, 1, 3).astype(np.float64)
    img = detection.image_points.reshape(-1, 1, 2).astype(np.float64)
    ok, rvec, tvec = cv2.solvePnP(obj, img, intrinsics.camera_matrix, intrinsics.dist_coeffs)
    if not ok:
        raise ValueError("solvePnP found no board pose")
    projected, _ = cv2.projectPoints(
        obj, rvec, tvec, intrinsics.camera_matrix, intrinsics.dist_coeffs
    )
    d = np.linalg.norm(projected.reshape(-1, 2) - img.reshape(-1, 2), axis=1)
    return float(np.sqrt(np.mean(d * d))), float(np.mean(d))


def stereo_rms(
    pairs: list[tuple[BoardDetection, BoardDetection]],
    reference: Intrinsics,
    test: Intrinsics,
) -> float:
    """RMS reprojection error of ``cv2.stereoCalibrate`` with both intrinsics fixed.

    Parameters
    ----------
    pairs
        ``(reference, test)`` detections of the same board pose; only corners seen in both
        (same id) are used, in the same order.

    Raises
    ------
    IntrinsicsError
        Fewer than :data:`MIN_VIEWS` pairs with enough common corners.
    """
    import cv2

    objects, ref_points, test_points = [], [], []
    for ref, tst in pairs:
        common, ri, ti = np.intersect1d(ref.ids, tst.ids, return_indices=True)
        if common.size < MIN_POINTS_PER_VIEW:
            continue
        objects.append(ref.object_points[ri].reshape(-1, 1, 3))
        ref_points.append(ref.image_points[ri].reshape(-1, 1, 2))
        test_points.append(tst.image_points[ti].reshape(-1, 1, 2))
    if len(objects) < MIN_VIEWS:
        raise IntrinsicsError(
            f"stereo calibration needs the board in both cameras in at least {MIN_VIEWS} "
            f"pairs, found {len(objects)}"
        )
    result = cv2.stereoCalibrate(
        objects,
        ref_points,
        test_points,
        reference.camera_matrix.copy(),
        reference.dist_coeffs.copy(),
        test.camera_matrix.copy(),
        test.dist_coeffs.copy(),
        reference.image_size,
        flags=cv2.CALIB_FIX_INTRINSIC,
    )
    return float(result[0])


def undistort_points(points: npt.NDArray[Any], intrinsics: Intrinsics) -> F64:
    """Distorted pixel coordinates -> undistorted pixel coordinates (same camera matrix).

    Parameters
    ----------
    points
        ``(N, 2)`` pixel coordinates.

    Returns
    -------
    numpy.ndarray
        ``(N, 2)`` float64.
    """
    import cv2

    pts = np.asarray(points, np.float64).reshape(-1, 1, 2)
    if pts.shape[0] == 0:
        return np.zeros((0, 2))
    k, d = intrinsics.camera_matrix, intrinsics.dist_coeffs
    # The default 5 iterations leave ~0.1 px errors in the image corners of strongly
    # distorted lenses; iterate to convergence. OpenCV 4.x names this overload
    # undistortPointsIter, OpenCV 5 folds it into undistortPoints.
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-6)
    if hasattr(cv2, "undistortPointsIter"):
        out = cv2.undistortPointsIter(pts, k, d, None, k, criteria)
    else:
        out = cv2.undistortPoints(pts, k, d, None, None, k, criteria)
    return np.asarray(out, np.float64).reshape(-1, 2)


def distort_points(points: npt.NDArray[Any], intrinsics: Intrinsics) -> F64:
    """Undistorted pixel coordinates -> distorted (raw image) pixel coordinates.

    Parameters
    ----------
    points
        ``(N, 2)`` undistorted pixel coordinates (camera matrix unchanged).

    Returns
    -------
    numpy.ndarray
        ``(N, 2)`` float64.
    """
    import cv2

    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if pts.shape[0] == 0:
        return np.zeros((0, 2))
    k = intrinsics.camera_matrix
    # Back to normalised camera rays (z = 1), then project through the lens model.
    rays = np.c_[
        (pts[:, 0] - k[0, 2]) / k[0, 0], (pts[:, 1] - k[1, 2]) / k[1, 1], np.ones(len(pts))
    ]
    projected, _ = cv2.projectPoints(
        rays.reshape(-1, 1, 3), np.zeros(3), np.zeros(3), k, intrinsics.dist_coeffs
    )
    return np.asarray(projected, np.float64).reshape(-1, 2)


def undistort_maps(intrinsics: Intrinsics, size: Size) -> tuple[Any, Any]:
    """``cv2.remap`` maps that undistort an image of ``size`` keeping the camera matrix."""
    import cv2

    return cv2.initUndistortRectifyMap(
        intrinsics.camera_matrix,
        intrinsics.dist_coeffs,
        None,
        intrinsics.camera_matrix,
        size,
        cv2.CV_32FC1,
    )


def undistort_image(
    image: npt.NDArray[Any], intrinsics: Intrinsics
) -> tuple[npt.NDArray[Any], npt.NDArray[np.uint8]]:
    """Undistort an image (same camera matrix, same size).

    Returns
    -------
    tuple
        ``(undistorted, valid)``: the image (same shape and dtype) and a ``(H, W)`` uint8 mask,
        255 where the pixel came from inside the original image.
    """
    import cv2

    size = (image.shape[1], image.shape[0])
    map_x, map_y = undistort_maps(intrinsics, size)
    out = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= size[0] - 1) & (map_y >= 0) & (map_y <= size[1] - 1)
    return np.asarray(out), (inside * 255).astype(np.uint8)
