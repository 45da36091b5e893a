"""The ``sync.json`` record: one file-shaped model (:class:`SyncFile`), one writer, one reader.

:class:`SyncFile` mirrors the file key by key (its JSON Schema is
``docs/schemas/sync.schema.json``); :class:`SyncResult` is the in-memory result.
:func:`write_sync_json` writes a :class:`SyncResult` (plus the ``--apply`` copies made from
it) through :meth:`SyncFile.from_result`; :func:`read_sync_record` / :func:`load_sync_json`
read it back through :meth:`SyncFile.from_file` and validate every field on load: a wrong
type, a NaN, a frame map entry that is not a frame index, an unknown key, another
``format_version`` or a document that is not a JSON object raises :class:`SyncFileError`
naming the file and the field. The layout on disk (``format_version`` 1)::

    {"format_version": 1, "expokit_version": str, "convention": CONVENTION,
     "method": "audio" | "brightness", "offset_s": s, "offset_frames": {"a", "b"},
     "drift_ppm": ppm, "drift_estimated": bool, "drift_residual_rms_s": s,
     "confidence": [0, 1], "peak_correlation": [-1, 1], "second_peak_ratio": [0, 1],
     "rate_hz": Hz, "windows": [{"t_a_s": s, "offset_s": s, "correlation"}],
     "brightness_events": null | {"matched": int, "in_overlap": int},
     "a": MediaInfo, "b": MediaInfo,
     "frame_map": null | {"description": str, "b_index_for_a": [int | null]},
     "warnings": [str], "attempts": [str], "config": SyncConfig, "elapsed_s": s,
     "applied_outputs": [{"path": str, "sha256": str}]  (only after --apply)}

The sign convention is that of :mod:`expokit.calibration.sync`: ``offset_s = t_B - t_A``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from expokit import __version__
from expokit.core.atomic import atomic_write_json
from expokit.core.errors import ExpokitError, InputFileError
from expokit.core.hashing import sha256_file
from expokit.core.paths import check_output_file
from expokit.core.schema import FieldError, from_json, to_json
from expokit.core.video_io import SYNC_CONVENTION as CONVENTION
from expokit.core.video_io import MediaInfo

SYNC_FORMAT_VERSION = 1

METHODS: tuple[str, ...] = ("auto", "audio", "brightness")


class SyncError(ExpokitError):
    """Two files cannot be synchronized reliably."""


class SyncFileError(InputFileError):
    """A ``sync.json`` cannot be read (missing, not JSON, unsupported format version)."""


@dataclass(frozen=True)
class SyncConfig:
    """Every parameter of ``expokit calibrate sync``; owns the defaults and their validation.

    Attributes
    ----------
    method
        ``"auto"`` (audio when both files have an audible track and the result is confident,
        else brightness), ``"audio"`` or ``"brightness"``.
    sample_rate
        Hz at which audio is decoded and finely correlated. 16 kHz keeps sub-millisecond
        accuracy (parabolic interpolation reaches well below one sample).
    coarse_factor
        Block-averaging factor for the coarse, whole-track correlation (16 kHz / 8 = 2 kHz).
    max_offset_s
        Largest ``|offset_s|`` searched; ``None``: any offset with ``min_overlap_s`` overlap.
    min_overlap_s
        Least overlap (seconds) a candidate offset must leave between the two recordings.
    window_s
        Length of each fine-correlation window (seconds of A).
    drift_windows
        Number of fine windows spread over a long overlap (drift needs at least 2).
    drift_min_span_s
        Drift is estimated only when window centres span at least this many seconds.
    max_drift_ppm
        Largest clock drift the fine search allows for (widens its search margin).
    min_confidence
        Results below it raise :class:`LowConfidenceError`; ``0`` accepts any result (and
        switches off the other reliability floors below), with a warning.
    min_peak_correlation
        Results whose normalized correlation at the peak is below it are rejected too: two
        unrelated tracks can have a peak that stands out by chance (confidence 0.27 for two
        different shared clips) but it explains almost none of the signal (0.06), while real
        pairs reach 0.6-0.99.
    peak_exclusion_s
        Half-width around the peak ignored when looking for the next peak (audio).
    silence_dbfs
        Audio whose RMS is below this level (dB full scale) counts as silent.
    brightness_edge_s
        Brightness changes this close to either end of a clip are ignored.
    min_brightness_step
        Smallest frame-to-frame change of mean gray level (of 255) that counts as a
        brightness event. Do not lower it much: tiny clips' encoder artefacts line up with
        the start of every file and give confident, wrong offsets (0 instead of -3 s on the
        10x18 px shared clips at 0.05).
    brightness_event_sigma
        An event must also exceed this many robust standard deviations of the clip's
        frame-to-frame changes.
    min_brightness_events
        Brightness results need at least this many distinct events (0.25 s apart) that
        coincide in both clips, and half of the events either clip has in the overlap: one
        event, or one flash (rise and fall), lines up with anything.
    min_brightness_confidence
        Stricter confidence floor for brightness results (few events, so chance peaks are
        higher: unrelated shared clips reach 0.24, a light switched 3 times 0.67).
    """

    __json_extra__ = "ignore"  # keys of other versions are dropped on load

    method: str = "auto"
    sample_rate: int = 16000
    coarse_factor: int = 8
    max_offset_s: float | None = None
    min_overlap_s: float = 1.0
    window_s: float = 10.0
    drift_windows: int = 5
    drift_min_span_s: float = 30.0
    max_drift_ppm: float = 1000.0
    min_confidence: float = 0.25
    min_peak_correlation: float = 0.1
    peak_exclusion_s: float = 0.05
    silence_dbfs: float = -70.0
    brightness_edge_s: float = 0.2
    min_brightness_step: float = 1.0
    brightness_event_sigma: float = 5.0
    min_brightness_events: int = 2
    min_brightness_confidence: float = 0.4

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 4000 <= self.sample_rate <= 192000:
            raise ValueError(f"sample rate must be 4000..192000 Hz, got {self.sample_rate}")
        if not 1 <= self.coarse_factor <= 64:
            raise ValueError(f"coarse factor must be 1..64, got {self.coarse_factor}")
        if self.sample_rate / self.coarse_factor < 500:
            raise ValueError("sample_rate / coarse_factor must be >= 500 Hz")
        if self.max_offset_s is not None and not (
            math.isfinite(self.max_offset_s) and self.max_offset_s > 0
        ):
            raise ValueError(f"max offset must be > 0 seconds, got {self.max_offset_s}")
        positive = {
            "min_overlap_s": self.min_overlap_s,
            "window_s": self.window_s,
            "peak_exclusion_s": self.peak_exclusion_s,
            "min_brightness_step": self.min_brightness_step,
            "brightness_event_sigma": self.brightness_event_sigma,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.min_brightness_events < 0:
            raise ValueError(
                f"min_brightness_events must be >= 0, got {self.min_brightness_events}"
            )
        if self.drift_windows < 1:
            raise ValueError(f"drift_windows must be >= 1, got {self.drift_windows}")
        for name, value in (
            ("drift_min_span_s", self.drift_min_span_s),
            ("max_drift_ppm", self.max_drift_ppm),
            ("brightness_edge_s", self.brightness_edge_s),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min confidence must be in [0, 1], got {self.min_confidence}")
        if not 0.0 <= self.min_brightness_confidence <= 1.0:
            raise ValueError(
                f"min brightness confidence must be in [0, 1], got {self.min_brightness_confidence}"
            )
        if not 0.0 <= self.min_peak_correlation <= 1.0:
            raise ValueError(
                f"min peak correlation must be in [0, 1], got {self.min_peak_correlation}"
            )
        if not (math.isfinite(self.silence_dbfs) and self.silence_dbfs < 0):
            raise ValueError(f"silence level must be < 0 dBFS, got {self.silence_dbfs}")

    @property
    def coarse_rate(self) -> float:
        return self.sample_rate / self.coarse_factor

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class WindowOffset:
    """Fine offset measured in one window: ``offset_s`` at ``t_a_s`` seconds of A."""

    t_a_s: float
    offset_s: float
    correlation: float


@dataclass(frozen=True)
class SyncResult:
    """Everything ``sync.json`` records; :func:`synchronize` makes it and writes nothing.

    ``frame_map[i]`` is the index of B's decoded frame shown at the time of A's decoded
    frame ``i`` (nearest timestamp within half a B frame), or ``None`` outside B.
    """

    media_a: MediaInfo
    media_b: MediaInfo
    method: str
    offset_s: float
    confidence: float
    peak_correlation: float
    rate_hz: float
    drift_ppm: float = 0.0
    drift_estimated: bool = False
    drift_residual_rms_s: float = 0.0
    second_peak_ratio: float = 0.0
    windows: tuple[WindowOffset, ...] = ()
    events_matched: int | None = None
    events_in_overlap: int | None = None
    frame_map: tuple[int | None, ...] | None = None
    warnings: tuple[str, ...] = ()
    attempts: tuple[str, ...] = ()
    config: SyncConfig = dataclasses.field(default_factory=SyncConfig)
    elapsed_s: float = 0.0

    def time_in_b(self, t_a: float) -> float:
        """Time in B (s) of an event at ``t_a`` seconds in A."""
        return t_a + self.offset_s + self.drift_ppm * 1e-6 * t_a

    def time_in_a(self, t_b: float) -> float:
        """Time in A (s) of an event at ``t_b`` seconds in B."""
        return (t_b - self.offset_s) / (1.0 + self.drift_ppm * 1e-6)

    @property
    def offset_frames_a(self) -> float | None:
        """``offset_s`` in frames of A (``None`` without video)."""
        fps = self.media_a.fps if self.media_a.has_video else None
        return self.offset_s * fps if fps else None

    @property
    def offset_frames_b(self) -> float | None:
        """``offset_s`` in frames of B (``None`` without video)."""
        fps = self.media_b.fps if self.media_b.has_video else None
        return self.offset_s * fps if fps else None

    def to_dict(self) -> dict[str, Any]:
        """The ``sync.json`` document (without ``applied_outputs``; see :func:`write_sync_json`)."""
        return SyncFile.from_result(self).to_file()

    @classmethod
    def from_dict(cls, data: object, source: str | Path = "sync.json") -> SyncResult:
        """Inverse of :meth:`to_dict`, validated field by field (see :func:`parse_sync_record`).

        Raises
        ------
        SyncFileError
            Naming ``source`` and the first field that is missing or malformed.
        """
        return parse_sync_record(data, Path(source)).result


# ----------------------------------------------------------------------------- reading


#: Key of ``sync.json`` recording the ``--apply`` copies written with it (path, sha256), so
#: a re-run may replace exactly those files and no other.
APPLIED_KEY = "applied_outputs"

#: Methods a ``sync.json`` can record (the one that gave the offset).
RESULT_METHODS: tuple[str, ...] = ("audio", "brightness")


@dataclass(frozen=True)
class SyncRecord:
    """A whole ``sync.json``: the result and the ``--apply`` copies written from it.

    Attributes
    ----------
    result
        The synchronization (offset in s, drift in ppm, frame map, ...).
    applied
        ``{resolved path: sha256}`` of the ``--apply`` copies recorded with it (may be empty).
    """

    result: SyncResult
    applied: Mapping[Path, str] = dataclasses.field(default_factory=dict)


def _minimum(value: int | None, name: str, minimum: int) -> None:
    if value is not None and value < minimum:
        raise FieldError(name, f"expected an integer >= {minimum}, got {value}")


@dataclass(frozen=True, kw_only=True)
class MediaFile:
    """``a`` / ``b`` of ``sync.json``: a :class:`MediaInfo` summary (no per-frame arrays).

    Attributes
    ----------
    path
        The media file.
    size_bytes
        File size, bytes.
    duration_s
        Container duration, s (``null``: unknown).
    start_s
        Container start time, s.
    has_video, has_audio
        Which tracks the file has.
    width, height
        Frame size, pixels.
    fps
        Frame rate of the decoded timestamps (header rate if not decoded), Hz.
    fps_container
        Frame rate the header claims, Hz.
    container_frames, decoded_frames
        Frame count the header claims / frames that decode.
    first_frame_s
        Presentation time of the first decoded frame, s.
    audio_rate
        Audio sample rate, Hz.
    """

    path: str
    size_bytes: int
    duration_s: float | None = None
    start_s: float
    has_video: bool
    has_audio: bool
    video_codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fps_container: float | None = None
    container_frames: int | None = None
    decoded_frames: int | None = None
    first_frame_s: float | None = None
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_channels: str | None = None
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("size_bytes", "container_frames", "decoded_frames"):
            _minimum(getattr(self, name), name, 0)
        for name in ("width", "height", "audio_rate"):
            _minimum(getattr(self, name), name, 1)

    @classmethod
    def from_media(cls, media: MediaInfo) -> MediaFile:
        data = media.to_dict()
        return cls(**{**data, "warnings": tuple(data["warnings"])})

    def to_media(self) -> MediaInfo:
        return MediaInfo(
            path=Path(self.path),
            size_bytes=self.size_bytes,
            duration_s=self.duration_s,
            start_s=self.start_s,
            has_video=self.has_video,
            has_audio=self.has_audio,
            video_codec=self.video_codec,
            width=self.width,
            height=self.height,
            fps_container=self.fps_container,
            container_frames=self.container_frames,
            decoded_frames=self.decoded_frames,
            audio_codec=self.audio_codec,
            audio_rate=self.audio_rate,
            audio_channels=self.audio_channels,
            warnings=self.warnings,
        )


@dataclass(frozen=True)
class OffsetFrames:
    """``offset_s`` in frames of A and of B (``null`` without video)."""

    a: float | None = None
    b: float | None = None


@dataclass(frozen=True)
class BrightnessEvents:
    """Brightness events that coincide in both clips, and those either clip has in the
    overlap (brightness method only)."""

    matched: int | None = None
    in_overlap: int | None = None

    def __post_init__(self) -> None:
        _minimum(self.matched, "matched", 0)
        _minimum(self.in_overlap, "in_overlap", 0)


FRAME_MAP_DESCRIPTION = "b_index_for_a[i]: B frame shown at A frame i (null: none)"


@dataclass(frozen=True, kw_only=True)
class FrameMapFile:
    """``frame_map`` of ``sync.json``.

    Attributes
    ----------
    description
        What the map means, in words.
    b_index_for_a
        Per decoded frame of A: the index (>= 0) of B's decoded frame shown at its time, or
        ``null`` outside B.
    """

    description: str = FRAME_MAP_DESCRIPTION
    b_index_for_a: list[int | None] = dataclasses.field(metadata={"checked_by_model": True})

    def __post_init__(self) -> None:
        entries: object = self.b_index_for_a
        if not isinstance(entries, list):
            raise FieldError("b_index_for_a", f"expected a JSON array, got {_kind(entries)}")
        for i, item in enumerate(entries):
            bad = isinstance(item, bool) or not isinstance(item, int) or item < 0
            if item is not None and bad:
                raise FieldError(
                    f"b_index_for_a[{i}]",
                    f"expected a B frame index (integer >= 0) or null, got {_kind(item)}",
                )


@dataclass(frozen=True)
class AppliedOutput:
    """An ``--apply`` copy written from the sync: its path and SHA-256."""

    path: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class SyncFile:
    """A whole ``sync.json``, key by key as on disk (``format_version`` 1).

    :func:`write_sync_json` writes one (:meth:`from_result`, :meth:`to_file`);
    :func:`read_sync_record` reads one (:meth:`from_file`, :meth:`to_record`).

    Attributes
    ----------
    format_version
        :data:`SYNC_FORMAT_VERSION`.
    expokit_version
        Version that wrote the file.
    convention
        The sign convention, in words: ``offset_s = t_B - t_A`` (:data:`CONVENTION`).
    method
        ``"audio"`` or ``"brightness"``: the method that gave the offset.
    offset_s
        ``t_B - t_A``, seconds.
    offset_frames
        ``offset_s`` in frames of A and of B.
    drift_ppm
        Clock drift of B relative to A, ppm.
    drift_estimated
        The drift was measured (else it is 0 and a warning says why).
    drift_residual_rms_s
        RMS of the window offsets around the offset + drift line, s.
    confidence
        Reliability in ``[0, 1]``.
    peak_correlation
        Normalized correlation at the peak, ``[-1, 1]``.
    second_peak_ratio
        Next peak relative to the best, ``[0, 1]``.
    rate_hz
        Sample rate of the correlated signals, Hz.
    windows
        Fine audio windows: offset measured at ``t_a_s`` seconds of A.
    brightness_events
        Brightness events used (brightness method), or ``null``.
    a, b
        The two media files.
    frame_map
        B frame shown at each A frame, or ``null`` without video.
    warnings
        Things worth knowing about the result.
    attempts
        What was tried, in order.
    config
        Every parameter of the sync.
    elapsed_s
        Time the sync took, s.
    applied_outputs
        ``--apply`` copies written from it (absent when none).
    """

    format_version: int
    expokit_version: str = ""
    convention: str
    method: Literal["audio", "brightness"]
    offset_s: float
    offset_frames: OffsetFrames | None = None
    drift_ppm: float = 0.0
    drift_estimated: bool = False
    drift_residual_rms_s: float = 0.0
    confidence: float
    peak_correlation: float = 0.0
    second_peak_ratio: float = 0.0
    rate_hz: float = 0.0
    windows: tuple[WindowOffset, ...] = ()
    brightness_events: BrightnessEvents | None = None
    a: MediaFile
    b: MediaFile
    frame_map: FrameMapFile | None = None
    warnings: tuple[str, ...] = ()
    attempts: tuple[str, ...] = ()
    config: SyncConfig = dataclasses.field(default_factory=SyncConfig)
    elapsed_s: float = 0.0
    applied_outputs: tuple[AppliedOutput, ...] = dataclasses.field(
        default=(), metadata={"omit_if_default": True}
    )

    @classmethod
    def from_result(cls, result: SyncResult, applied: Sequence[Path] = ()) -> SyncFile:
        """The file of ``result``; ``applied`` copies are hashed (SHA-256) and recorded."""
        events = None
        if result.events_matched is not None:
            events = BrightnessEvents(result.events_matched, result.events_in_overlap)
        frame_map = None
        if result.frame_map is not None:
            frame_map = FrameMapFile(b_index_for_a=list(result.frame_map))
        return cls(
            format_version=SYNC_FORMAT_VERSION,
            expokit_version=__version__,
            convention=CONVENTION,
            method=typing.cast(Literal["audio", "brightness"], result.method),
            offset_s=result.offset_s,
            offset_frames=OffsetFrames(result.offset_frames_a, result.offset_frames_b),
            drift_ppm=result.drift_ppm,
            drift_estimated=result.drift_estimated,
            drift_residual_rms_s=result.drift_residual_rms_s,
            confidence=result.confidence,
            peak_correlation=result.peak_correlation,
            second_peak_ratio=result.second_peak_ratio,
            rate_hz=result.rate_hz,
            windows=tuple(result.windows),
            brightness_events=events,
            a=MediaFile.from_media(result.media_a),
            b=MediaFile.from_media(result.media_b),
            frame_map=frame_map,
            warnings=tuple(result.warnings),
            attempts=tuple(result.attempts),
            config=result.config,
            elapsed_s=result.elapsed_s,
            applied_outputs=tuple(AppliedOutput(str(p.resolve()), sha256_file(p)) for p in applied),
        )

    def to_file(self) -> dict[str, Any]:
        """The JSON document (``applied_outputs`` only when there are copies)."""
        document: dict[str, Any] = to_json(self)
        return document

    @classmethod
    def from_file(cls, data: object, source: str | Path) -> SyncFile:
        """Validate a decoded ``sync.json``, every field typed.

        Raises
        ------
        SyncFileError
            Naming ``source`` and the first field missing, unknown or of the wrong type.
        """
        return from_json(cls, data, Path(source), error=SyncFileError, kind="sync.json")

    def to_record(self) -> SyncRecord:
        """The :class:`SyncRecord` (result and resolved ``--apply`` copies) of the file."""
        events = self.brightness_events
        result = SyncResult(
            media_a=self.a.to_media(),
            media_b=self.b.to_media(),
            method=self.method,
            offset_s=self.offset_s,
            confidence=self.confidence,
            peak_correlation=self.peak_correlation,
            rate_hz=self.rate_hz,
            drift_ppm=self.drift_ppm,
            drift_estimated=self.drift_estimated,
            drift_residual_rms_s=self.drift_residual_rms_s,
            second_peak_ratio=self.second_peak_ratio,
            windows=self.windows,
            events_matched=None if events is None else events.matched,
            events_in_overlap=None if events is None else events.in_overlap,
            frame_map=None if self.frame_map is None else tuple(self.frame_map.b_index_for_a),
            warnings=self.warnings,
            attempts=self.attempts,
            config=self.config,
            elapsed_s=self.elapsed_s,
        )
        applied = {Path(o.path).resolve(): o.sha256 for o in self.applied_outputs}
        return SyncRecord(result, applied)


class _Fields:
    """Typed access to one JSON object of ``sync.json``; errors name the file and field."""

    def __init__(self, source: Path, data: object, where: str = "") -> None:
        self.source = source
        self.where = where
        if not isinstance(data, dict):
            raise self.error(where or "top level", f"expected a JSON object, got {_kind(data)}")
        self.data: dict[str, Any] = data

    def error(self, field: str, problem: str) -> SyncFileError:
        return SyncFileError(self.source, f"sync.json field {field!r}: {problem}")

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, default: Any, *, required: bool) -> Any:
        if key not in self.data:
            if required:
                raise self.error(self.name(key), "missing")
            return default
        return self.data[key]

    def number(
        self,
        key: str,
        default: float | None = 0.0,
        *,
        required: bool = False,
        nullable: bool = False,
    ) -> Any:
        """A finite number (``int`` or ``float``, never ``bool``), or ``None`` if nullable."""
        value = self.get(key, default, required=required)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(self.name(key), f"expected a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise self.error(self.name(key), f"expected a finite number, got {value!r}")
        return float(value)

    def integer(self, key: str, *, required: bool = False, minimum: int = 0) -> int | None:
        """An ``int >= minimum`` (never ``bool``) or ``None``."""
        value = self.get(key, None, required=required)
        if value is None and not required:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(
                self.name(key), f"expected an integer >= {minimum}, got {_kind(value)}"
            )
        return value

    def boolean(self, key: str, default: bool | None = False, *, required: bool = False) -> Any:
        value = self.get(key, default, required=required)
        if value is None and default is None:
            return None
        if not isinstance(value, bool):
            raise self.error(self.name(key), f"expected true or false, got {_kind(value)}")
        return value

    def text(self, key: str, *, required: bool = False, nullable: bool = True) -> str | None:
        value = self.get(key, None, required=required)
        if value is None and nullable and not required:
            return None
        if not isinstance(value, str):
            raise self.error(self.name(key), f"expected a string, got {_kind(value)}")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.get(key, [], required=False)
        items = self.items(key, value)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(f"{self.name(key)}[{i}]", f"expected a string, got {_kind(item)}")
        return tuple(items)

    def items(self, key: str, value: object) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(self.name(key), f"expected a JSON array, got {_kind(value)}")
        return value

    def child(self, key: str, *, required: bool = False) -> _Fields | None:
        value = self.get(key, None, required=required)
        if value is None and not required:
            return None
        return _Fields(self.source, value, self.name(key))


def _kind(value: object) -> str:
    """Short description of a JSON value for error messages (type and a clipped repr)."""
    names = {dict: "a JSON object", list: "a JSON array", str: "a string", bool: "a boolean"}
    kind = names.get(type(value), "null" if value is None else type(value).__name__)
    shown = repr(value)
    return kind if isinstance(value, (dict, list)) or value is None else f"{kind} {shown[:40]}"


def parse_sync_record(data: object, source: Path) -> SyncRecord:
    """Validate a decoded ``sync.json`` document and build its :class:`SyncRecord`.

    Parameters
    ----------
    data
        The JSON value read from ``source``.
    source
        The file, named in every error.

    Raises
    ------
    SyncFileError
        Not a JSON object, no or another ``format_version`` (``true`` is not ``1``), another
        sign convention, or a field that is missing, of the wrong type or not finite.
    """
    fields = _Fields(source, data)
    version = fields.get("format_version", None, required=False)
    if version is None:
        raise SyncFileError(source, "not a sync.json (no format_version)")
    if isinstance(version, bool) or version != SYNC_FORMAT_VERSION:
        raise SyncFileError(
            source,
            f"sync.json format_version {version!r} is not supported (this expokit reads "
            f"version {SYNC_FORMAT_VERSION})",
        )
    convention = fields.text("convention", required=True)
    if convention != CONVENTION:
        raise fields.error("convention", f"unknown sign convention {convention!r}")
    method = fields.text("method", required=True)
    if method not in RESULT_METHODS:
        raise fields.error("method", f"expected one of {', '.join(RESULT_METHODS)}, got {method!r}")
    return SyncFile.from_file(data, source).to_record()


def _read_json(path: Path) -> object:
    """The JSON value in ``path``; :class:`SyncFileError` naming the file otherwise."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SyncFileError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SyncFileError(path, f"not a readable sync.json: not a JSON file ({exc})") from None


def read_sync_record(path: str | Path) -> SyncRecord:
    """Read and validate a whole ``sync.json`` (the one reader).

    Raises
    ------
    SyncFileError
        Missing, not JSON, or invalid (see :func:`parse_sync_record`); names file and field.
    """
    source = Path(path)
    return parse_sync_record(_read_json(source), source)


def load_sync_json(path: str | Path) -> SyncResult:
    """The :class:`SyncResult` of a ``sync.json`` (see :func:`read_sync_record`)."""
    return read_sync_record(path).result


def is_sync_json(path: str | Path) -> bool:
    """True when ``path`` holds a ``sync.json`` written by expokit (an earlier output that
    a re-run may replace). A loose check of ownership: a damaged own file still counts."""
    try:
        data = _read_json(Path(path))
    except SyncFileError:
        return False
    return (
        isinstance(data, dict)
        and "format_version" in data
        and isinstance(data.get("convention"), str)
        and "offset_s" in data
    )


def recorded_outputs(path: str | Path) -> dict[Path, str]:
    """``--apply`` copies recorded by an earlier ``sync.json`` at ``path``: resolved path to
    sha256. Empty when there is none, or the file is not ours or does not validate (then no
    earlier copy is replaced)."""
    if not is_sync_json(path):
        return {}
    try:
        return dict(read_sync_record(path).applied)
    except SyncFileError:
        return {}


# ----------------------------------------------------------------------------- writing


def check_sync_json_target(path: str | Path, inputs: Sequence[str | Path]) -> Path:
    """``path`` when ``sync.json`` may be written there.

    Raises
    ------
    OutputError
        ``path`` is one of ``inputs`` (a video), a file an expokit root tracks (a dataset's
        ``manifest.parquet``, a session's journal, ...), a folder, or an existing file that
        is not an earlier ``sync.json``.
    """
    return check_output_file(
        path, inputs=inputs, what="sync.json output (--out)", is_own_output=is_sync_json
    )


def write_sync_json(result: SyncResult, path: str | Path, applied: Sequence[Path] = ()) -> Path:
    """Write ``result`` as ``sync.json`` atomically (the one writer); return the path.

    ``applied`` are the ``--apply`` copies written from it; their paths and hashes are
    recorded so that a re-run may replace them (:func:`expokit.calibration.sync.apply_sync`).
    """
    target = Path(path)
    document = SyncFile.from_result(result, applied).to_file()
    atomic_write_json(target, document)
    return target


__all__ = [
    "APPLIED_KEY",
    "METHODS",
    "RESULT_METHODS",
    "SYNC_FORMAT_VERSION",
    "AppliedOutput",
    "BrightnessEvents",
    "FrameMapFile",
    "MediaFile",
    "OffsetFrames",
    "SyncConfig",
    "SyncError",
    "SyncFile",
    "SyncFileError",
    "SyncRecord",
    "SyncResult",
    "WindowOffset",
    "check_sync_json_target",
    "is_sync_json",
    "load_sync_json",
    "parse_sync_record",
    "read_sync_record",
    "recorded_outputs",
    "write_sync_json",
]
