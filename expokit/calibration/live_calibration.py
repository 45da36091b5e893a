"""One key in ``expokit align live``: shoot calibration stills, run ``calibrate geometry``.

When the live figures say READY, the person presses the page's button (or ``c`` in the
terminal mode): the live loop pauses, both bodies shoot :attr:`LiveCalibrationConfig.pairs`
synchronized calibration pairs into the session (journaled as shots of kind
``calibration``, as ``expokit capture calibration`` does), :func:`calibrate_geometry` runs on
them into ``SESSION/calibration/NN/`` and the outcome is journaled as one event:

``rig_calibrated``
    ``shots`` (indices), ``calibration`` (the ``rig_calibration.json``, relative to the
    session folder), ``flip``, ``method``, ``inliers``, ``reprojection_rms`` and
    ``parallax_px`` (``null`` when no second depth layer was seen);
``calibration_failed``
    ``shots`` and ``error`` (the message the person saw).

The live view then goes on; a failure never stops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expokit.calibration.boards import BoardSpec
from expokit.calibration.geometry import GeometryConfig, calibrate_geometry
from expokit.capture.commands import CalibrationShooter
from expokit.capture.journal import CalibrationFailed, RigCalibrated
from expokit.core.errors import ExpokitError

__all__ = ["CALIBRATION_FOLDER", "LiveCalibrationConfig", "LiveCalibrator", "rig_board"]

#: Folder of a session that receives one numbered calibration per button press.
CALIBRATION_FOLDER = "calibration"


def rig_board() -> BoardSpec:
    """The rig's ChArUco board (7x5 squares of 40 mm, 28 mm markers, DICT_6X6_250): the one
    the rig guide prints, the simulator renders and ``calibrate geometry``'s examples use."""
    return BoardSpec.parse("charuco", "7x5", 0.04, 0.028, "DICT_6X6_250")


@dataclass(frozen=True)
class LiveCalibrationConfig:
    """What the calibration key does.

    Attributes
    ----------
    pairs
        Calibration pairs shot per press (1-20).
    board
        The board in the stills; ``None``: features only.
    feature_fallback
        Use features when the board is not found (a textured scene instead of the board).
    """

    pairs: int = 1
    board: BoardSpec | None = field(default_factory=rig_board)
    feature_fallback: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.pairs <= 20:
            raise ValueError(f"calibration pairs must be 1-20, got {self.pairs}")


class LiveCalibrator:
    """Callable for the live loop: one press = shoot, calibrate, journal (see module)."""

    def __init__(self, shooter: CalibrationShooter, config: LiveCalibrationConfig) -> None:
        self.shooter = shooter
        self.config = config

    def __call__(self) -> dict[str, Any]:
        """Run one calibration; a JSON-ready outcome with ``status`` (``done``/``failed``)
        and ``message`` (one line), and on success where the record was written."""
        try:
            session, files = self.shooter.shoot(self.config.pairs)
        except ExpokitError as exc:
            message = f"calibration stills not shot: {exc}"
            if self.shooter.session is not None:
                self.shooter.session.journal.append(CalibrationFailed(shots=[], error=message))
            return {"status": "failed", "message": message}
        shots = [index for index, _, _ in files]
        out = _next_folder(session.root / CALIBRATION_FOLDER)
        refs, tests = [r for _, r, _ in files], [t for _, _, t in files]
        try:
            calib = calibrate_geometry(
                refs, tests, out, self.config.board,
                GeometryConfig(feature_fallback=self.config.feature_fallback),
            )  # fmt: skip
        except ExpokitError as exc:
            message = f"calibrate geometry failed: {exc}"
            session.journal.append(CalibrationFailed(shots=shots, error=message))
            return {"status": "failed", "message": message, "session": str(session.root)}
        record = out / "rig_calibration.json"
        parallax_px = None if calib.parallax is None else calib.parallax["parallax_px"]
        session.journal.append(RigCalibrated(
            shots=shots, calibration=str(record.relative_to(session.root)),
            flip=calib.flip.value, method=calib.method, inliers=calib.inliers,
            reprojection_rms=calib.reprojection_rms, parallax_px=parallax_px,
        ))  # fmt: skip
        message = (
            f"calibrated from {len(files)} pair(s): flip {calib.flip.value}, {calib.method}, "
            f"RMS {calib.reprojection_rms:.3f} px -> {record}"
        )
        if calib.parallax is not None:
            message += f"; WARNING {calib.parallax['description']}"
        return {
            "status": "done",
            "message": message,
            "session": str(session.root),
            "calibration": str(record),
            "flip": calib.flip.value,
            "method": calib.method,
            "reprojection_rms": calib.reprojection_rms,
            "parallax_px": parallax_px,
        }


def _next_folder(parent: Path) -> Path:
    """``parent/01``, ``parent/02``, ...: the first number not taken."""
    number = 1
    while (parent / f"{number:02d}").exists():
        number += 1
    return parent / f"{number:02d}"
