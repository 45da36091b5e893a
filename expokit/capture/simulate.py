"""The rig simulator (``expokit simulate``): what a beam-splitter rig records, answer known.

A scene (:mod:`expokit.capture.footage`: a movie, a folder of frames, a still, or our own
``generated`` footage) is recorded by two simulated bodies, and the result is written as a
capture session in exactly the form ``expokit capture`` writes (``rig.json``,
``journal.jsonl``, ``files/`` named by the rig's template, root marker kind ``session``)
plus ``truth.json`` (what every calibration stage should recover). The calibration stills
(a ChArUco board seen by both cameras, as a lab shoots before recording) are journaled as
a shot of kind ``calibration`` (``curate build`` skips that kind; pass its two files to
``expokit calibrate geometry``; ``truth.json["files"]`` names them ``board_reference`` and
``board_test``).

The same physics (:class:`RigSimulation`, one call per shot) is served by the fake capture
backend when a rig config's ``[fake]`` table names a ``source``: ``expokit capture
video/pair/calibration`` on such a rig then writes these files through the normal capture
code (download, journal, template names) and a ``truth.json`` into the session.

Physics, in linear light (sRGB sources are decoded to linear first):

* the reference camera is exposed at EV 0 through the splitter's transmitted beam; the test
  camera at ``ev_offset`` through the reflected beam, ``splitter_ratio`` = transmitted /
  reflected light. On unclipped pixels ``reference = test * photometric_gain`` with
  ``photometric_gain = splitter_ratio * 2 ** -ev_offset`` (truth.json);
* each sensor clips at its white level and adds shot noise (``full_well_e`` electrons at
  white) and read noise (``read_noise_e``), seeded per camera;
* the test camera sees the scene through a small misregistration homography (a few px
  shift, < 1 deg rotation, ~1 % scale) and through the splitter's mirror (a horizontal
  flip). ``truth.json["homography"]`` maps *unflipped* test pixels (``Flip.apply`` of the
  raw test image) to reference pixels, full resolution: the convention of
  ``rig_calibration.json``, so the two compare directly;
* each body starts recording at its own scene time and runs on its own clock (ppm error):
  body ``c`` records, at its own time ``t``, the scene at ``start_c + t / (1 + ppm_c 1e-6)``,
  for video frames *and* audio samples (the scene's sound resampled on the body's clock,
  with the body's own gain and noise). In ``sync.json``'s convention (A = reference file,
  B = test file) ``offset_s = (start_ref - start_test) * (1 + ppm_test 1e-6)`` and
  ``drift_ppm = ((1 + ppm_test 1e-6) / (1 + ppm_ref 1e-6) - 1) 1e6`` are exactly the
  configured values;
* movies are H.264 (yuv420p) + AAC in MP4, by the imageio-ffmpeg binary; stills and the
  board are 16-bit PNG (sRGB-encoded). Stills and video frames share the sensor size.
* ``config.defects`` (:mod:`expokit.capture.defects`) inject known QA faults into chosen
  still pairs and movie frames (never the board), recorded in ``truth.json["defects"]``.

Everything random comes from ``seed``: the same config writes the same pixels and truth.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from expokit.capture.defects import DefectPlan, DefectRecord, DefectSpec, Shot, as_specs
from expokit.capture.footage import (
    SCENE_AUDIO_RATE,
    Footage,
    GeneratedScene,
    generated_footage,
    linear_to_srgb,
    load_footage,
    source_size,
)
from expokit.capture.session import CALIBRATION_KIND
from expokit.core.errors import ExpokitError, OutputError

#: Version of the ``truth.json`` layout.
SIMULATION_FORMAT_VERSION = 1
TRUTH_FILE = "truth.json"
#: Keys of a rig config's ``[fake.simulation]`` table (fields of :class:`SimulationConfig`;
#: ``seconds`` and ``still_pairs`` come from the capture command instead).
SIMULATION_KEYS: tuple[str, ...] = (
    "ev_offset", "offset_s", "drift_ppm", "seed", "scene_seed", "size", "fps",
    "splitter_ratio", "audio_rate", "crf", "reference_sensor", "test_sensor",
)  # fmt: skip
#: Largest |ev_offset| the simulated sensor can record usefully (beyond it the test camera
#: is black or white).
MAX_EV_OFFSET = 8.0
#: Largest |drift_ppm| accepted (quartz clocks of cameras are within ~100 ppm).
MAX_DRIFT_PPM = 1000.0
#: Defaults of the ``generated`` source.
GENERATED_SIZE = (320, 240)
GENERATED_SECONDS = 10.0
#: Least recording (camera seconds) both bodies must share.
MIN_RECORDING_S = 1.0
#: Reference settings written into rig.json (the test shutter follows ev_offset).
REFERENCE_SHUTTER = "1/125"
BOARD: dict[str, Any] = {"kind": "charuco", "columns": 7, "rows": 5, "square_size": 0.04,
         "marker_size": 0.028, "dictionary": "DICT_6X6_250"}  # fmt: skip

Image = npt.NDArray[np.float32]


class SimulationError(ExpokitError):
    """The simulation cannot run as configured; the message names the setting or file."""


@dataclass(frozen=True)
class SensorModel:
    """Noise of one simulated sensor: shot noise of ``full_well_e`` electrons at white and
    Gaussian read noise; variance of a linear value ``x`` in [0, 1] is
    ``x / full_well_e + (read_noise_e / full_well_e) ** 2``."""

    full_well_e: float = 6000.0
    read_noise_e: float = 4.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.full_well_e) and self.full_well_e >= 10):
            raise SimulationError(f"full_well_e must be >= 10, got {self.full_well_e}")
        if not (math.isfinite(self.read_noise_e) and self.read_noise_e >= 0):
            raise SimulationError(f"read_noise_e must be >= 0, got {self.read_noise_e}")


def _setting(name: str, option: str) -> str:
    return f"{name} ({option})" if option else name


@dataclass(frozen=True)
class SimulationConfig:
    """Every parameter of ``expokit simulate``; owns the defaults and their validation.

    Attributes
    ----------
    source
        A movie, a folder of frames, an image file, or ``"generated"``.
    ev_offset
        Test exposure relative to the reference (EV), within +-:data:`MAX_EV_OFFSET`.
    offset_s, drift_ppm
        Start offset and relative clock drift in ``sync.json``'s convention (A =
        reference file, B = test file); ``|drift_ppm| <= MAX_DRIFT_PPM``.
    seed
        Everything random (homography, noise, clocks, gains, generated footage).
    scene_seed
        Seed of the generated footage alone (default: ``seed``): the same rig (``seed``)
        filming another scene, e.g. a second clip of one session's rig.
    seconds
        Length of the recordings (camera seconds); default: generated 10 s, else as much
        as the source allows.
    size
        ``(width, height)`` of both sensors; default: generated 320x240, else the source's.
    fps
        Frame rate of generated footage and of a folder of frames (a movie keeps its own).
    splitter_ratio
        Transmitted (reference) / reflected (test) light of the beam splitter.
    still_pairs
        Still pairs of the scene shot besides the movie.
    defects
        Known QA defects to inject into chosen still pairs and movie frames
        (:mod:`expokit.capture.defects`; ``--defect`` texts are parsed), recorded in
        ``truth.json["defects"]``. Not part of a rig's ``[fake.simulation]`` table.
    steady_light
        Generated footage without its light dims and flashes (its claps stay, so audio
        sync still works): a scene whose light changes only by the injected defects (QA
        benchmarks). Brightness-only sync needs those events; generated source only.
    """

    source: str = "generated"
    ev_offset: float = -2.0
    offset_s: float = 0.37
    drift_ppm: float = 120.0
    seed: int = 0
    scene_seed: int | None = None
    seconds: float | None = None
    size: tuple[int, int] | None = None
    fps: float = 24.0
    splitter_ratio: float = 1.0
    still_pairs: int = 3
    reference_sensor: SensorModel = field(default_factory=SensorModel)
    test_sensor: SensorModel = field(default_factory=SensorModel)
    audio_rate: int = 48000
    crf: int = 16
    defects: tuple[DefectSpec, ...] = ()
    steady_light: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "defects", as_specs(self.defects))
        if self.steady_light and not self.generated:
            raise SimulationError(
                f"{_setting('steady_light', '--steady-light')} applies to the generated "
                f"source only; {self.source} has the light it was filmed with"
            )
        if not math.isfinite(self.ev_offset) or abs(self.ev_offset) > MAX_EV_OFFSET:
            raise SimulationError(
                f"{_setting('ev_offset', '--ev-offset')} = {self.ev_offset:g} is beyond the "
                f"simulated sensor's range of +-{MAX_EV_OFFSET:g} EV"
            )
        if not math.isfinite(self.drift_ppm) or abs(self.drift_ppm) > MAX_DRIFT_PPM:
            raise SimulationError(
                f"{_setting('drift_ppm', '--drift-ppm')} = {self.drift_ppm:g}: camera clocks "
                f"drift by at most +-{MAX_DRIFT_PPM:g} ppm"
            )
        if not math.isfinite(self.offset_s) or abs(self.offset_s) > 60:
            raise SimulationError(
                f"{_setting('offset_s', '--offset-s')} = {self.offset_s:g} must be within +-60 s"
            )
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise SimulationError(f"{_setting('seconds', '--seconds')} must be > 0")
        if self.size is not None:
            w, h = self.size
            if w < 64 or h < 64 or w > 8192 or h > 8192:
                raise SimulationError(
                    f"{_setting('size', '--size')} {w}x{h}: each side must be 64-8192 px"
                )
            if w % 2 or h % 2:
                raise SimulationError(
                    f"{_setting('size', '--size')} {w}x{h}: sides must be even (H.264 4:2:0)"
                )
        if not (math.isfinite(self.fps) and 1 <= self.fps <= 240):
            raise SimulationError(f"fps = {self.fps:g} must be within 1-240")
        if not (math.isfinite(self.splitter_ratio) and 0.1 <= self.splitter_ratio <= 10):
            raise SimulationError(f"splitter_ratio = {self.splitter_ratio:g} must be within 0.1-10")
        if self.still_pairs < 0 or self.still_pairs > 100:
            raise SimulationError(f"still_pairs = {self.still_pairs} must be within 0-100")
        if not 8000 <= self.audio_rate <= 96000:
            raise SimulationError(f"audio_rate = {self.audio_rate} must be 8000-96000 Hz")
        if not 0 <= self.crf <= 51:
            raise SimulationError(f"crf = {self.crf} must be 0-51")
        if not self.source:
            raise SimulationError(
                "source is empty: give a movie, a folder, an image or 'generated'"
            )

    @property
    def generated(self) -> bool:
        return self.source == "generated"

    @property
    def photometric_gain(self) -> float:
        """Reference / test in linear light on unclipped pixels."""
        return float(self.splitter_ratio * 2.0**-self.ev_offset)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["size"] = list(self.size) if self.size else None
        data["defects"] = [d.to_dict() for d in self.defects]
        # A session without defects or steady light has the truth.json it always had.
        for key in ("defects", "steady_light"):
            if not data[key]:
                del data[key]
        return data


@dataclass(frozen=True)
class Body:
    """One simulated camera: when it starts, its clock error, its sound and its sensor."""

    role: str
    start_s: float
    clock_ppm: float
    gain: float
    audio_gain: float
    audio_noise: float
    sensor: SensorModel
    flip: bool
    view: npt.NDArray[np.float64]  # sensor pixel -> canvas pixel

    @property
    def rate(self) -> float:
        return 1.0 + self.clock_ppm * 1e-6

    def scene_time(self, t: npt.NDArray[np.float64] | float) -> Any:
        """Scene time at which this body's clock reads ``t`` (s since it started)."""
        return self.start_s + np.asarray(t, np.float64) / self.rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_s": self.start_s,
            "clock_ppm": self.clock_ppm,
            "exposure_gain": self.gain,
            "audio_gain": self.audio_gain,
            "audio_noise_rms": self.audio_noise,
            "sensor": asdict(self.sensor),
            "mirrored": self.flip,
        }


@dataclass
class SimulationResult:
    """What :func:`simulate` wrote."""

    root: Path
    truth: dict[str, Any]
    files: dict[str, str]

    @property
    def truth_path(self) -> Path:
        return self.root / TRUTH_FILE


# --------------------------------------------------------------------------- physics


def misregistration(rng: np.random.Generator, size: tuple[int, int]) -> npt.NDArray[np.float64]:
    """A small random test -> reference homography about the image centre: 1.5-4 px shift,
    0.2-0.9 deg rotation, 0.4-1.4 % scale, a trace of perspective."""
    w, h = size
    cx, cy = (w - 1) / 2, (h - 1) / 2
    angle = math.radians(rng.uniform(0.2, 0.9) * rng.choice([-1, 1]))
    scale = 1.0 + rng.uniform(0.004, 0.014) * rng.choice([-1, 1])
    shift_len = rng.uniform(1.5, 4.0)
    direction = rng.uniform(0, 2 * math.pi)
    tx, ty = shift_len * math.cos(direction), shift_len * math.sin(direction)
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]])
    back = np.array([[1, 0, cx + tx], [0, 1, cy + ty], [0, 0, 1.0]])
    similarity = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    persp = np.eye(3)
    persp[2, :2] = rng.uniform(-1, 1, 2) * 3e-6
    hm = back @ similarity @ persp @ to_centre
    return np.asarray(hm / hm[2, 2], np.float64)


def expose(
    scene: Image,
    body: Body,
    size: tuple[int, int],
    rng: np.random.Generator,
) -> Image:
    """What ``body``'s sensor records of the linear ``scene`` canvas: linear [0, 1],
    ``(H, W, 3)``, clipped, with shot and read noise, mirrored for the test camera."""
    import cv2

    image = cv2.warpPerspective(
        scene, body.view, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )  # fmt: skip
    well = body.sensor.full_well_e
    electrons = np.maximum(image * (body.gain * well), 0.0)
    sigma = np.sqrt(electrons + body.sensor.read_noise_e**2)
    noisy = electrons + rng.standard_normal(electrons.shape, np.float32) * sigma
    out = np.clip(noisy / well, 0.0, 1.0).astype(np.float32)
    return np.ascontiguousarray(out[:, ::-1]) if body.flip else out


def to_uint(linear: Image, bits: int) -> npt.NDArray[Any]:
    top = (1 << bits) - 1
    values = np.round(linear_to_srgb(linear) * top)
    return values.astype(np.uint8 if bits == 8 else np.uint16)


def record_audio(
    scene_audio: npt.NDArray[np.float32],
    body: Body,
    seconds: float,
    rate: int,
    rng: np.random.Generator,
) -> npt.NDArray[np.float32]:
    """``seconds`` of ``body``'s microphone at ``rate`` on its own clock."""
    count = round(seconds * rate)
    tau = body.scene_time(np.arange(count, dtype=np.float64) / rate)
    grid = np.arange(scene_audio.size, dtype=np.float64) / SCENE_AUDIO_RATE
    sound = np.interp(tau, grid, scene_audio.astype(np.float64), left=0.0, right=0.0)
    noisy = body.audio_gain * sound + rng.normal(0, body.audio_noise, count)
    return np.clip(noisy, -1, 1).astype(np.float32)


def render_board(canvas: tuple[int, int]) -> Image:
    """Linear radiance of the ChArUco board :data:`BOARD` on a grey wall, ``canvas`` size."""
    import cv2

    width, height = canvas
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, BOARD["dictionary"]))
    board = cv2.aruco.CharucoBoard(
        (BOARD["columns"], BOARD["rows"]), BOARD["square_size"], BOARD["marker_size"], dictionary
    )
    board_h = int(0.8 * height)
    board_w = int(board_h * BOARD["columns"] / BOARD["rows"])
    if board_w > 0.85 * width:
        board_w = int(0.85 * width)
        board_h = int(board_w * BOARD["rows"] / BOARD["columns"])
    image = board.generateImage((board_w * 4, board_h * 4), marginSize=0)
    image = cv2.resize(image, (board_w, board_h), interpolation=cv2.INTER_AREA)
    wall = np.full((height, width), 0.18, np.float32)
    y0, x0 = (height - board_h) // 2, (width - board_w) // 2
    wall[y0 : y0 + board_h, x0 : x0 + board_w] = 0.03 + 0.77 * (image.astype(np.float32) / 255)
    return np.repeat(wall[:, :, None], 3, axis=2)


# --------------------------------------------------------------------------- encoding


def _rate_text(fps: float) -> str:
    frac = Fraction(fps).limit_denominator(1001)
    return f"{frac.numerator}/{frac.denominator}"


def _write_wav(path: Path, samples: npt.NDArray[np.float32], rate: int) -> None:
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


def encode_movie(
    target: Path,
    frames: Iterator[npt.NDArray[np.uint8]],
    size: tuple[int, int],
    fps: float,
    audio: npt.NDArray[np.float32] | None,
    audio_rate: int,
    crf: int,
) -> None:
    """H.264 (yuv420p) + AAC MP4 of RGB ``frames`` and mono ``audio`` (bit-exact flags, one
    thread: the same input gives the same bytes)."""
    from expokit.core.video_io import ffmpeg_exe

    width, height = size
    with tempfile.TemporaryDirectory(prefix="expokit-sim-") as tmp:
        args = [
            ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{width}x{height}", "-framerate", _rate_text(fps), "-i", "-",
        ]  # fmt: skip
        if audio is not None:
            wav = Path(tmp) / "audio.wav"
            _write_wav(wav, audio, audio_rate)
            args += ["-i", str(wav), "-map", "0:v", "-map", "1:a"]
        args += [
            "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-threads", "1", "-fflags", "+bitexact", "-flags", "+bitexact",
            "-map_metadata", "-1",
        ]  # fmt: skip
        if audio is not None:
            args += ["-c:a", "aac", "-b:a", "192k", "-ar", str(audio_rate), "-ac", "1"]
        args += ["-f", "mp4", str(target)]
        log = Path(tmp) / "ffmpeg.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=err)
            assert proc.stdin is not None
            try:
                for frame in frames:
                    proc.stdin.write(np.ascontiguousarray(frame).tobytes())
            except BrokenPipeError:
                pass
            finally:
                proc.stdin.close()
                code = proc.wait()
        if code != 0:
            lines = log.read_text(errors="replace").strip().splitlines()
            raise OutputError(
                f"{target}: ffmpeg could not encode the movie: {lines[-1] if lines else code}"
            )


def png16_bytes(linear: Image) -> bytes:
    """A 16-bit sRGB-encoded PNG of the linear RGB ``linear`` (what a simulated still is)."""
    import cv2

    ok, encoded = cv2.imencode(".png", to_uint(linear, 16)[:, :, ::-1])
    if not ok:
        raise OutputError("could not encode a simulated still as PNG")
    return bytes(encoded.tobytes())


def write_png16(path: Path, linear: Image) -> None:
    from expokit.core.atomic import atomic_path

    data = png16_bytes(linear)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# --------------------------------------------------------------------------- one rig


@dataclass
class RigSimulation:
    """One simulated rig recording one scene: the only implementation of the physics.

    Made once per session by :meth:`create` (bodies, misregistration, clocks, scene, all
    from ``config.seed``); then each shot is one call: :meth:`movie` (one body's movie),
    :meth:`still` (one body's still of the scene at a scene time), :meth:`board` (one
    body's still of the ChArUco board). Both ``expokit simulate`` and the fake capture
    backend (a fake rig whose ``[fake]`` table names a ``source``) shoot through it.
    Per-body noise generators advance with every shot of that body, so a session is
    deterministic per seed and shot order.
    """

    config: SimulationConfig
    size: tuple[int, int]
    canvas: tuple[int, int]
    bodies: dict[str, Body]
    homography: npt.NDArray[np.float64]
    footage: Footage
    seconds: float
    noise_rngs: dict[str, np.random.Generator]
    audio_rngs: dict[str, np.random.Generator]
    defects: DefectPlan = field(default_factory=DefectPlan)
    _board: Image | None = field(default=None, repr=False)

    @classmethod
    def create(cls, config: SimulationConfig) -> RigSimulation:
        """Bodies and scene for ``config``; ``config.seconds`` is the movie length.

        Raises
        ------
        SimulationError, FootageError
            As :func:`simulate`.
        """
        if config.generated:
            native = config.size or GENERATED_SIZE
        else:
            native = config.size or source_size(Path(config.source))
        size = (native[0] - native[0] % 2, native[1] - native[1] % 2)
        margin = max(8, round(0.04 * max(size)))
        canvas = (size[0] + 2 * margin, size[1] + 2 * margin)
        rng = np.random.default_rng([config.seed, 11])
        reference, test, h_true = _make_bodies(config, rng, size, margin)
        bodies = [reference, test]
        lead = max(b.start_s for b in bodies)
        if config.generated:
            seconds = config.seconds or GENERATED_SECONDS
            footage = _footage(config, canvas, lead + seconds * 1.001 + 2.0 / config.fps + 0.1)
        else:
            wanted = None if config.seconds is None else lead + config.seconds * 1.001 + 1.0
            footage = _footage(config, canvas, wanted)
        seconds = 0.0 if footage.is_still else _recording_seconds(config, footage, bodies)
        sim = cls(
            config, size, canvas, {b.role: b for b in bodies}, h_true, footage, seconds,
            {b.role: np.random.default_rng([config.seed, 23, i]) for i, b in enumerate(bodies)},
            {b.role: np.random.default_rng([config.seed, 29, i]) for i, b in enumerate(bodies)},
        )  # fmt: skip
        if config.defects:
            sim.defects = DefectPlan.create(
                config.defects, config.seed, sim.bodies, sim.session_still_times(),
                sim.frame_count, sim.fps, canvas,
            )  # fmt: skip
        return sim

    @property
    def video(self) -> bool:
        return not self.footage.is_still

    @property
    def fps(self) -> float:
        return self.footage.fps if self.video else 0.0

    @property
    def frame_count(self) -> int:
        return math.floor(self.seconds * self.fps + 1e-9) if self.video else 0

    def describe(self) -> str:
        w, h = self.size
        text = f"source      {self.footage.kind} {self.footage.source}, {w}x{h}"
        if self.video:
            return text + f", {self.fps:.3f} fps, {self.seconds:.2f} s"
        return text + " (still)"

    def still(self, role: str, scene_t: float, pair: int | None = None) -> Image:
        """``role``'s still of the scene at scene time ``scene_t`` (linear, as recorded);
        ``pair`` (1-based still pair number) applies the defects of that pair."""
        body = self.bodies[role]
        if pair is None:
            return expose(self.footage.frame_at(scene_t), body, self.size, self.noise_rngs[role])
        shot = Shot("still", pair)
        scene, body = self.defects.apply(role, shot, scene_t, scene_t, self.footage.frame_at, body)
        image = expose(scene, body, self.size, self.noise_rngs[role])
        self.defects.observe(role, shot, image)
        return image

    def board(self, role: str) -> Image:
        """``role``'s still of the ChArUco board :data:`BOARD` (linear, as recorded)."""
        if self._board is None:
            self._board = render_board(self.canvas)
        return expose(self._board, self.bodies[role], self.size, self.noise_rngs[role])

    def session_still_times(self) -> list[float]:
        """Scene times of the still pairs :func:`simulate` shoots (one of a still source)."""
        return self.still_times(self.config.still_pairs) if self.video else [0.0]

    def still_times(self, count: int) -> list[float]:
        """Scene times of ``count`` still pairs spread over what both bodies record."""
        if not self.video:
            return [0.0] * count
        return _still_times(count, list(self.bodies.values()), self.seconds)

    def still_time(self, shot: int) -> float:
        """Scene time of the ``shot``-th still (0-based) when the count is not known ahead
        (the fake backend): a low-discrepancy walk over what both bodies record."""
        if not self.video:
            return 0.0
        start = max(b.start_s for b in self.bodies.values())
        end = min(float(b.scene_time(self.seconds)) for b in self.bodies.values())
        fraction = ((shot + 0.5) * 0.6180339887498949) % 1.0
        return round(start + (end - start) * fraction, 6)

    def movie(self, role: str, target: Path, progress: bool = False) -> dict[str, Any]:
        """Encode ``role``'s movie (:attr:`seconds` on its own clock, with its sound) to
        ``target``; returns the body's entry of ``truth.json["bodies"]``."""
        from tqdm import tqdm

        body = self.bodies[role]
        audio = None
        if self.footage.audio is not None:
            audio = record_audio(
                self.footage.audio, body, self.seconds, self.config.audio_rate,
                self.audio_rngs[role],
            )  # fmt: skip
        count = self.frame_count
        frames = _movie_frames(
            self.footage, body, self.size, self.fps, count, self.noise_rngs[role],
            tqdm(total=count, desc=f"simulate {role}", unit="frame",
                 disable=not progress or None), self.defects,
        )  # fmt: skip
        encode_movie(target, frames, self.size, self.fps, audio, self.config.audio_rate,
                     self.config.crf)  # fmt: skip
        return {
            **body.to_dict(),
            "frames": count,
            "audio_samples": None if audio is None else int(audio.size),
        }

    def truth(
        self, files: dict[str, str], bodies_info: dict[str, dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """``truth.json`` for a session holding ``files`` (key -> path in the session)."""
        from expokit.core.schema import to_json

        truth = _truth(
            self.config, self.footage, self.size, self.homography,
            [self.bodies["reference"], self.bodies["test"]], bodies_info or {},
            self.seconds if files.get("video_reference") else 0.0,
            self.fps, files,
        )  # fmt: skip
        if self.defects:
            truth["defects"] = to_json(list(self.defects.records(files)))
        return truth


TRUTH_KIND = "expokit rig simulation"


@dataclass(frozen=True)
class TruthFile:
    """``truth.json`` of a simulated session: what every calibration stage should recover.

    Written by :func:`write_truth`, read by :func:`expokit.curation.truth.load_truth`.

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
        from expokit.core.schema import from_json

        return from_json(cls, data, source, error=error, kind=TRUTH_FILE)

    def to_json(self) -> dict[str, Any]:
        """The ``truth.json`` document (key order as written since format 1)."""
        from expokit.core.schema import to_json

        document: dict[str, Any] = to_json(self)
        return document


def write_truth(root: Path, truth: dict[str, Any]) -> dict[str, Any]:
    """Add the files' SHA-256 to ``truth`` and write ``root/truth.json`` atomically.

    The one writer: ``truth`` is checked through :class:`TruthFile` first (a wrong field
    is a bug, raised as :class:`ValueError`). Returns the document written.
    """
    from expokit.core.atomic import atomic_write_json
    from expokit.core.hashing import sha256_file

    def bug(path: Path, problem: str) -> Exception:
        return ValueError(f"{path}: {problem}")

    truth["sha256"] = {
        key: sha256_file(root / path) for key, path in sorted(truth["files"].items())
    }
    model = TruthFile.from_json(truth, root / TRUTH_FILE, bug)
    document = model.to_json()
    atomic_write_json(root / TRUTH_FILE, document)
    return document


def truth_file_keys(events: list[dict[str, Any]]) -> dict[str, str]:
    """``truth.json["files"]`` of a session from its journal events: ``board_<role>`` (the
    first calibration shot), ``calibration_<index>_<role>``, ``video_<role>`` (the first
    video shot) and ``still_<index>_<role>``, each ``files/<name>``."""
    kinds = {int(e["index"]): str(e["kind"]) for e in events if e["event"] == "planned"}
    files: dict[str, str] = {}
    for event in events:
        if event["event"] != "downloaded":
            continue
        index, role = int(event["index"]), str(event["role"])
        path = f"files/{event['file']}"
        kind = kinds.get(index)
        if kind == CALIBRATION_KIND:
            files.setdefault(f"board_{role}", path)
            files[f"calibration_{index:04d}_{role}"] = path
        elif kind == "video":
            files.setdefault(f"video_{role}", path)
        elif kind is not None:
            files[f"still_{index:04d}_{role}"] = path
    return files


# --------------------------------------------------------------------------- session


def _prepare_out(out: Path) -> None:
    from expokit.core.paths import check_name

    check_name(out.name, "session folder name", where="--out")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OutputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise OutputError(
            f"--out {out} is not empty; a session folder is never reused (choose a new one)"
        )


def fake_table(config: SimulationConfig, serials: dict[str, str]) -> dict[str, Any]:
    """The rig config's ``[fake]`` table of a rig that records ``config`` (rig.json of a
    simulated session: ``expokit capture`` on it shoots the same simulation)."""
    simulation: dict[str, Any] = {
        key: getattr(config, key) for key in SIMULATION_KEYS if key != "ev_offset"
    }
    simulation["size"] = list(config.size) if config.size else None
    simulation = {k: v for k, v in simulation.items() if v is not None}
    for key in ("reference_sensor", "test_sensor"):
        simulation[key] = asdict(getattr(config, key))
    return {
        "cameras": [
            {"serial": serial, "model": f"Simulated body ({role})"}
            for role, serial in serials.items()
        ],
        "source": config.source,
        "simulation": simulation,
    }


def _rig_config(out: Path, config: SimulationConfig) -> Any:
    from expokit.capture.backends.fake import SHUTTER_CHOICES
    from expokit.capture.exposure import nearest_shutter, shutter_seconds
    from expokit.capture.rig_config import RigConfig, RoleConfig

    test_shutter, _ = nearest_shutter(
        shutter_seconds(REFERENCE_SHUTTER) * 2.0**config.ev_offset, SHUTTER_CHOICES
    )
    serials = {"reference": f"SIMREF{config.seed:04d}", "test": f"SIMTEST{config.seed:04d}"}
    source = config.source if config.generated else str(Path(config.source).resolve())
    return RigConfig(
        roles={
            "reference": RoleConfig(
                serials["reference"],
                {"shutter": REFERENCE_SHUTTER, "aperture": "8", "iso": "100"},
            ),
            "test": RoleConfig(
                serials["test"], {"shutter": test_shutter, "aperture": "8", "iso": "100"}
            ),
        },
        backend="fake",
        output_root=out.resolve().parent,
        ev_offset=config.ev_offset,
        fake=fake_table(replace(config, source=source), serials),
    )


def _camera_settings(generic: dict[str, str]) -> dict[str, str]:
    names = {"shutter": "shutterspeed", "aperture": "f-number", "iso": "iso"}
    return {names.get(k, k): v for k, v in generic.items()}


def _role_plans(rig: Any) -> dict[str, dict[str, Any]]:
    plans = {}
    for role, role_config in rig.roles.items():
        generic = dict(role_config.settings)
        ev = 0.0 if role == "reference" else rig.ev_offset
        plans[role] = {
            "ev": round(ev, 4),
            "generic": generic,
            "settings": _camera_settings(generic),
        }
    return plans


def _make_bodies(
    config: SimulationConfig,
    rng: np.random.Generator,
    size: tuple[int, int],
    margin: int,
) -> tuple[Body, Body, npt.NDArray[np.float64]]:
    h_true = misregistration(rng, size)
    crop = np.array([[1, 0, margin], [0, 1, margin], [0, 0, 1.0]])
    ref_ppm = float(rng.uniform(-20, 20))
    test_rate = (1 + ref_ppm * 1e-6) * (1 + config.drift_ppm * 1e-6)
    test_ppm = (test_rate - 1) * 1e6
    # offset_s = (start_ref - start_test) * test_rate; the later body starts at scene 0.
    delta = config.offset_s / test_rate
    start_ref, start_test = max(delta, 0.0), max(-delta, 0.0)
    reference = Body(
        "reference", start_ref, ref_ppm, 1.0, float(rng.uniform(0.6, 1.0)),
        float(rng.uniform(0.0015, 0.003)), config.reference_sensor, False, crop,
    )  # fmt: skip
    test = Body(
        "test", start_test, test_ppm, 2.0**config.ev_offset / config.splitter_ratio,
        float(rng.uniform(0.4, 0.8)), float(rng.uniform(0.0015, 0.003)), config.test_sensor,
        True, crop @ h_true,
    )  # fmt: skip
    return reference, test, h_true


def _footage(
    config: SimulationConfig, canvas: tuple[int, int], seconds_needed: float | None
) -> Footage:
    if config.generated:
        assert seconds_needed is not None
        scene = config.seed if config.scene_seed is None else config.scene_seed
        if not config.steady_light:
            return generated_footage(canvas, seconds_needed, config.fps, scene)
        generator = GeneratedScene(canvas, seconds_needed, scene)
        generator.dims, generator.flashes = [], []  # the same scene, its light held still
        return Footage("generated", "generated", canvas, config.fps, seconds_needed,
                       generator.audio, _generator=generator)  # fmt: skip
    return load_footage(Path(config.source), canvas, config.fps, seconds_needed)


def _recording_seconds(config: SimulationConfig, footage: Footage, bodies: list[Body]) -> float:
    """Camera seconds both bodies record: as asked, or what the source allows."""
    available = min((footage.duration_s - b.start_s) * b.rate for b in bodies)
    available -= 1.0 / footage.fps  # the last frame must still be inside the source
    wanted = config.seconds if config.seconds is not None else available
    if config.generated and config.seconds is None:
        wanted = GENERATED_SECONDS
    if available < MIN_RECORDING_S or wanted > available + 1e-9:
        raise SimulationError(
            f"{config.source}: {footage.duration_s:.2f} s of footage leave "
            f"{max(available, 0):.2f} s of recording with offset_s (--offset-s) "
            f"{config.offset_s:g}; need "
            + (f"{wanted:g} s (--seconds)" if config.seconds is not None else
               f"at least {MIN_RECORDING_S:g} s")
        )  # fmt: skip
    return float(wanted)


def simulate(
    config: SimulationConfig,
    out: str | Path,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Simulate a beam-splitter rig recording ``config.source``; write the session at ``out``.

    The session holds, in this order: shot 1 of kind ``video`` (unless the source is a
    still), ``config.still_pairs`` shots of kind ``pair`` and one shot of kind
    ``calibration`` (the ChArUco board seen by both cameras, as a lab shoots it);
    every file is journaled and named by the rig's template, as ``expokit capture``
    writes them. The physics is :class:`RigSimulation`'s, shared with the fake backend.

    Raises
    ------
    SimulationError
        A setting the simulation cannot honour (the message names it).
    FootageError
        A missing or unusable source (no frames, mixed frame sizes, RAW, unreadable).
    OutputError
        ``out`` exists and is not an empty folder, or cannot be written.
    """
    from expokit.capture.journal import Journal
    from expokit.capture.session import CONFIG_FILE, JOURNAL_FILE, Session
    from expokit.core.atomic import atomic_path, atomic_write_json
    from expokit.core.lock import RootLock
    from expokit.core.roots import claim_root

    say = log or (lambda _: None)
    out = Path(out)
    _prepare_out(out)
    sim = RigSimulation.create(config)
    say(sim.describe())
    for injection in sim.defects.injections:
        say(f"defect      {injection.spec.text()}")

    rig = _rig_config(out, config)
    claim_root(out, "session", what="simulated session folder (--out)")
    lock = RootLock(out, "expokit simulate").acquire()
    journal = Journal(out / JOURNAL_FILE)
    session = Session(out, rig, journal, lock)
    files: dict[str, str] = {}
    bodies_info: dict[str, dict[str, Any]] = {}
    order = ("reference", "test")
    try:
        session.files_dir.mkdir(exist_ok=True)
        atomic_write_json(out / CONFIG_FILE, rig.to_dict())
        journal.append("session_started", session=out.name, rig=rig.to_dict(), simulated=True)
        roles = _role_plans(rig)
        for role in order:
            journal.append(
                "settings_applied", index=1, role=role, settings=roles[role]["settings"],
                mismatches=[],
            )  # fmt: skip
        host_t0 = time.monotonic()

        def still_shot(plan: Any, role: str, image: Image, scene_t: float) -> str:
            name = session.filename(plan, role, ".png")
            target = session.file_path(name)
            write_png16(target, image)
            journal.append(
                "triggered", index=plan.index, role=role, t_before=host_t0 + scene_t,
                t_after=host_t0 + scene_t, attempt=1, trigger="simulated",
            )  # fmt: skip
            _journal_download(journal, plan.index, role, target)
            return f"files/{name}"

        if sim.video:
            (plan,) = session.plan("video", [roles], seconds=round(sim.seconds, 6))
            for role in order:
                body = sim.bodies[role]
                name = session.filename(plan, role, ".mp4")
                target = session.file_path(name)
                journal.append(
                    "triggered", index=plan.index, role=role,
                    t_before=host_t0 + body.start_s, t_after=host_t0 + body.start_s,
                    attempt=1, movie="start", simulated=True,
                )  # fmt: skip
                with atomic_path(target) as tmp:
                    bodies_info[role] = sim.movie(role, tmp, progress)
                _journal_download(journal, plan.index, role, target)
                files[f"video_{role}"] = f"files/{name}"
            journal.append("shot_done", index=plan.index)
        # Still pairs of the scene, both cameras at the same scene instant.
        still_times = sim.session_still_times()
        plans = session.plan("pair", [roles] * len(still_times))
        for number, (plan, scene_t) in enumerate(zip(plans, still_times, strict=True), 1):
            for role in order:
                key = f"still_{plan.index:04d}_{role}"
                image = sim.still(role, scene_t, pair=number)
                files[key] = still_shot(plan, role, image, scene_t)
            journal.append("shot_done", index=plan.index, scene_time_s=scene_t)
        # The calibration board (a lab shoots it before recording; journaled last so the
        # dataset shots keep their indices): a calibration shot, never a dataset pair.
        (calibration,) = session.plan(CALIBRATION_KIND, [roles])
        for role in order:
            files[f"board_{role}"] = still_shot(calibration, role, sim.board(role), 0.0)
        journal.append("shot_done", index=calibration.index)
        journal.append(
            "command_finished", kind="simulate", shots_done=len(plans) + 1 + int(sim.video),
            shots_failed=[],
        )  # fmt: skip
        truth = write_truth(out, sim.truth(files, bodies_info))
    finally:
        session.close()
    return SimulationResult(out, truth, files)


def _movie_frames(
    footage: Footage,
    body: Body,
    size: tuple[int, int],
    fps: float,
    count: int,
    rng: np.random.Generator,
    bar: Any,
    defects: DefectPlan,
) -> Iterator[npt.NDArray[np.uint8]]:
    with contextlib.closing(bar):
        for k in range(count):
            scene_t = float(body.scene_time(k / fps))
            shot = Shot("frame", k)
            scene, seen_by = defects.apply(
                body.role, shot, scene_t, k / fps, footage.frame_at, body
            )
            image = expose(scene, seen_by, size, rng)
            defects.observe(body.role, shot, image)
            yield to_uint(image, 8)
            bar.update(1)


def _still_times(count: int, bodies: list[Body], seconds: float) -> list[float]:
    start = max(b.start_s for b in bodies)
    end = min(float(b.scene_time(seconds)) for b in bodies)
    return [round(start + (end - start) * (i + 0.5) / count, 6) for i in range(count)]


def _journal_download(journal: Any, index: int, role: str, target: Path) -> None:
    from expokit.core.hashing import sha256_file

    journal.append(
        "downloaded", index=index, role=role, file=target.name, size=target.stat().st_size,
        sha256=sha256_file(target), camera_file=f"/simulated/{target.name}", attempts=1,
        synchronized=True,
    )  # fmt: skip


def _truth(
    config: SimulationConfig,
    footage: Footage,
    size: tuple[int, int],
    h_true: npt.NDArray[np.float64],
    bodies: list[Body],
    bodies_info: dict[str, dict[str, Any]],
    seconds: float,
    fps: float,
    files: dict[str, str],
) -> dict[str, Any]:
    from expokit import __version__
    from expokit.core.video_io import SYNC_CONVENTION as CONVENTION

    reference, test = bodies
    offset = (reference.start_s - test.start_s) * test.rate
    drift = (test.rate / reference.rate - 1.0) * 1e6
    return {
        "format_version": SIMULATION_FORMAT_VERSION,
        "kind": "expokit rig simulation",
        "expokit_version": __version__,
        "seed": config.seed,
        "source": footage.describe(),
        "config": config.to_dict(),
        "image_size": list(size),
        "flip": "horizontal",
        "homography": [[float(v) for v in row] for row in h_true],
        "homography_convention": (
            "test -> reference, full-resolution pixels, applied AFTER undoing the flip "
            "(to Flip.apply of the raw test image); the convention of rig_calibration.json"
        ),
        "ev_offset": config.ev_offset,
        "splitter_ratio": config.splitter_ratio,
        "photometric_gain": config.photometric_gain,
        "photometric_gain_convention": "reference = test * gain in linear light, unclipped",
        "offset_s": offset,
        "drift_ppm": drift,
        "sync_convention": CONVENTION,
        "sync_a": files.get("video_reference"),
        "sync_b": files.get("video_test"),
        "fps": fps,
        "seconds": seconds,
        "audio": footage.audio is not None,
        "audio_rate": config.audio_rate if footage.audio is not None else None,
        "noise": {
            "model": "variance(x) = x / full_well_e + (read_noise_e / full_well_e)^2, "
            "x linear in [0, 1], clipped at 1",
            "reference": asdict(config.reference_sensor),
            "test": asdict(config.test_sensor),
        },
        "bodies": {b.role: bodies_info.get(b.role, b.to_dict()) for b in bodies},
        "board": dict(BOARD),
        "files": dict(sorted(files.items())),
        "encoding": {
            "video": f"H.264 yuv420p MP4, crf {config.crf}",
            "audio": "AAC mono",
            "stills": "16-bit PNG, sRGB-encoded",
        },
    }
