"""``truth.json`` of a simulated session: its name, layout (:class:`TruthFile`), the one
writer (:func:`write_truth`) and the one reader (:func:`read_truth`, behind
:func:`expokit.curation.truth.load_truth`).

The bottom of the simulator: it knows the file, not the physics that fills it
(:mod:`expokit.capture.simulator.physics`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from expokit.capture.defects import DefectRecord
from expokit.core.atomic import atomic_write_json
from expokit.core.hashing import sha256_file
from expokit.core.schema import from_json, to_json

#: Version of the ``truth.json`` layout.
SIMULATION_FORMAT_VERSION = 1
TRUTH_FILE = "truth.json"
TRUTH_KIND = "expokit rig simulation"


@dataclass(frozen=True)
class TruthFile:
    """``truth.json`` of a simulated session: what every calibration stage should recover.

    Written by :func:`write_truth`, read by :func:`read_truth`
    (:func:`expokit.curation.truth.load_truth`).

    Attributes
    ----------
    format_version
        Layout version (:data:`SIMULATION_FORMAT_VERSION`).
    kind
        Always ``"expokit rig simulation"``.
    expokit_version
        Version of expokit that simulated the session.
    seed
        Seed of every random choice.
    source
        The footage (generated or a video file) the scenes come from.
    config
        The :class:`SimulationConfig` as a JSON object.
    image_size
        Width and height of a full-resolution still, pixels.
    flip
        Mirror of the test camera (``"horizontal"``).
    homography
        3x3 test -> reference homography, full-resolution pixels, after undoing the flip.
    homography_convention, photometric_gain_convention, sync_convention
        The conventions, in words.
    ev_offset
        Exposure of the test camera relative to the reference, EV.
    splitter_ratio
        Beam-splitter light ratio reference / test.
    photometric_gain
        ``splitter_ratio * 2 ** -ev_offset``: reference = test * gain in linear light.
    offset_s
        Sync offset ``t_B - t_A`` of the two videos, seconds.
    drift_ppm
        Clock drift of B relative to A, ppm.
    sync_a, sync_b
        Session paths of the reference / test video (``null``: no video).
    fps
        Video frame rate, Hz.
    seconds
        Video length, seconds.
    audio
        The videos carry an audio track.
    audio_rate
        Audio sample rate, Hz (``null`` without audio).
    noise
        Sensor noise model and the two sensors' parameters.
    bodies
        Per camera role: the simulated body (clock, gains, ...).
    board
        The calibration board (ChArUco geometry).
    files
        ``{key: session path}`` of every simulated file (``board_reference``, ...).
    encoding
        How videos, audio and stills are encoded.
    sha256
        ``{key: SHA-256}`` of every file of ``files``.
    capture
        How the session was captured (``expokit capture`` on a fake rig); absent for
        ``expokit simulate``.
    defects
        Every injected QA defect (:class:`~expokit.capture.defects.DefectRecord`: kind,
        magnitude and unit, camera, still pairs, frame ranges and files hit, resolved
        parameters); absent for a clean session.
    """

    format_version: int
    kind: Literal["expokit rig simulation"]
    expokit_version: str
    seed: int
    source: dict[str, Any]
    config: dict[str, Any]
    image_size: tuple[int, int]
    flip: str
    homography: tuple[
        tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]
    ]
    homography_convention: str
    ev_offset: float
    splitter_ratio: float
    photometric_gain: float
    photometric_gain_convention: str
    offset_s: float
    drift_ppm: float
    sync_convention: str
    sync_a: str | None
    sync_b: str | None
    fps: float
    seconds: float
    audio: bool
    audio_rate: int | None
    noise: dict[str, Any]
    bodies: dict[str, dict[str, Any]]
    board: dict[str, Any]
    files: dict[str, str]
    encoding: dict[str, str]
    sha256: dict[str, str] = field(default_factory=dict)
    capture: str | None = field(default=None, metadata={"omit_if_default": True})
    defects: tuple[DefectRecord, ...] = field(default=(), metadata={"omit_if_default": True})

    def __post_init__(self) -> None:
        if self.format_version != SIMULATION_FORMAT_VERSION:
            raise ValueError(
                f"format_version {self.format_version!r} is not supported (this expokit "
                f"reads version {SIMULATION_FORMAT_VERSION})"
            )
        if min(self.image_size) < 1:
            raise ValueError(f"image_size must be positive, got {list(self.image_size)}")

    @classmethod
    def from_json(
        cls, data: object, source: str | Path, error: Callable[[Path, str], Exception]
    ) -> TruthFile:
        """Validate a decoded ``truth.json`` (``error(path, problem)`` names the field)."""
        return from_json(cls, data, source, error=error, kind=TRUTH_FILE)

    def to_json(self) -> dict[str, Any]:
        """The ``truth.json`` document (key order as written since format 1)."""
        document: dict[str, Any] = to_json(self)
        return document


def write_truth(root: Path, truth: TruthFile) -> TruthFile:
    """Write ``root/truth.json`` atomically: ``truth`` with the SHA-256 of each of its
    files (paths relative to ``root``); the one writer. Returns the record written."""
    digests = {key: sha256_file(root / path) for key, path in sorted(truth.files.items())}
    written = replace(truth, sha256=digests)
    atomic_write_json(root / TRUTH_FILE, written.to_json())
    return written


def read_truth(path: Path, error: Callable[[Path, str], Exception]) -> TruthFile:
    """The validated ``truth.json`` at ``path`` as a :class:`TruthFile`.

    Every problem is raised as ``error(path, problem)``: absent, not JSON, not an object,
    another ``kind`` or ``format_version``, or a field that is missing or of the wrong type
    (the problem names the field).
    """
    if not path.is_file():
        raise error(
            path,
            "no such file; only a session written by `expokit simulate` has the truth to "
            "compare with",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(path, f"unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise error(path, f"must be a JSON object, got {type(data).__name__}")
    if data.get("kind") != TRUTH_KIND:
        raise error(path, "not an expokit rig simulation truth file")
    version = data.get("format_version")
    if version != SIMULATION_FORMAT_VERSION or isinstance(version, bool):
        raise error(path, f"format_version {version!r} is not {SIMULATION_FORMAT_VERSION}")
    return TruthFile.from_json(data, path, error)
