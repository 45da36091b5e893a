"""The rig simulator's physics: two simulated bodies behind a beam splitter recording a scene.

:class:`SimulationConfig` holds every parameter (and its validation); :class:`RigSimulation`
(one per session, one call per shot) is the only implementation of the physics, served by
both ``expokit simulate`` (:mod:`expokit.capture.simulate`, the session writer) and the
fake capture backend (:mod:`expokit.capture.backends.fake`) of a rig whose ``[fake]`` table
names a ``source``. Its pixels are encoded by :mod:`expokit.capture.simulator.encode`; its
answer goes to ``truth.json`` (:mod:`expokit.capture.simulator.truth_file`).

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
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from expokit import __version__
from expokit.capture.defects import DefectPlan, DefectSpec, Shot, as_specs
from expokit.capture.footage import (
    SCENE_AUDIO_RATE,
    Footage,
    FootageError,
    GeneratedScene,
    generated_footage,
    load_footage,
    source_memory_bytes,
    source_size,
)
from expokit.capture.simulator.encode import Image, encode_movie, to_uint
from expokit.capture.simulator.truth_file import (
    SIMULATION_FORMAT_VERSION,
    TRUTH_FILE,
    TRUTH_KIND,
    TruthFile,
)
from expokit.core.errors import ExpokitError
from expokit.core.progress import show_progress
from expokit.core.schema import to_json
from expokit.core.video_io import SYNC_CONVENTION as CONVENTION

#: Keys of a rig config's ``[fake.simulation]`` table (fields of :class:`SimulationConfig`;
#: ``seconds`` and ``still_pairs`` come from the capture command instead).
SIMULATION_KEYS: tuple[str, ...] = (
    "ev_offset", "offset_s", "drift_ppm", "seed", "scene_seed", "size", "fps",
    "splitter_ratio", "audio_rate", "crf", "reference_sensor", "test_sensor", "steady_light",
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
#: Sides of a simulated sensor (px): ``--size`` and a source's own size without it. Below
#: 64 px the ChArUco board cannot be drawn; above 8192 one frame alone is ~800 MB.
MIN_SENSOR_SIDE = 64
MAX_SENSOR_SIDE = 8192
#: Largest ``seed`` / ``scene_seed``: seeds are used as 32-bit words (numpy's seed
#: sequences refuse negative ones; a 32-bit range is what every RNG here accepts).
MAX_SEED = 2**32 - 1
#: Most memory a simulation may plan to hold (bytes): the generated scene's panning texture
#: grows with the square of the recording length and a real source's frames are all kept,
#: so a long recording is refused up front instead of failing (or swapping) mid-session.
MAX_SIMULATION_BYTES = 8 * 2**30
BOARD: dict[str, Any] = {"kind": "charuco", "columns": 7, "rows": 5, "square_size": 0.04,
         "marker_size": 0.028, "dictionary": "DICT_6X6_250"}  # fmt: skip


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
        for name, option in (("seed", "--seed"), ("scene_seed", "")):
            value = getattr(self, name)
            if value is None and name == "scene_seed":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
                raise SimulationError(
                    f"{_setting(name, option)} = {value!r} must be an integer within "
                    f"0-{MAX_SEED} (a 32-bit seed)"
                )
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
            lo, hi = MIN_SENSOR_SIDE, MAX_SENSOR_SIDE
            if not (lo <= w <= hi and lo <= h <= hi):
                raise SimulationError(
                    f"{_setting('size', '--size')} {w}x{h}: each side must be {lo}-{hi} px"
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
            As :func:`expokit.capture.simulate.simulate`.
        """
        native = _native_size(config)
        size = (native[0] - native[0] % 2, native[1] - native[1] % 2)
        margin = max(8, round(0.04 * max(size)))
        canvas = (size[0] + 2 * margin, size[1] + 2 * margin)
        rng = np.random.default_rng([config.seed, 11])
        reference, test, h_true = _make_bodies(config, rng, size, margin)
        bodies = [reference, test]
        lead = max(b.start_s for b in bodies)
        wanted: float | None  # scene seconds the footage must hold (None: all of it)
        if config.generated:
            seconds = config.seconds or GENERATED_SECONDS
            wanted = lead + seconds * 1.001 + 2.0 / config.fps + 0.1
        else:
            wanted = None if config.seconds is None else lead + config.seconds * 1.001 + 1.0
        _check_memory(config, size, canvas, wanted)
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
        """Scene times of the still pairs :func:`~expokit.capture.simulate.simulate` shoots
        (one of a still source)."""
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
            show_progress(total=count, desc=f"simulate {role}", unit="frame",
                          enabled=progress), self.defects,
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
    ) -> TruthFile:
        """The ``truth.json`` record for a session holding ``files`` (key -> path in the
        session; the SHA-256 are added by :func:`~.truth_file.write_truth`)."""
        truth = _truth(
            self.config, self.footage, self.size, self.homography,
            [self.bodies["reference"], self.bodies["test"]], bodies_info or {},
            self.seconds if files.get("video_reference") else 0.0,
            self.fps, files,
        )  # fmt: skip
        if self.defects:
            truth["defects"] = to_json(list(self.defects.records(files)))
        return TruthFile.from_json(truth, TRUTH_FILE, _simulator_bug)


# --------------------------------------------------------------------------- helpers


def _simulator_bug(path: Path, problem: str) -> Exception:
    """The simulator built a truth record its own model refuses: a bug, not bad input."""
    return ValueError(f"simulator truth for {path}: {problem}")


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


def _native_size(config: SimulationConfig) -> tuple[int, int]:
    """Sensor size before evening: ``config.size``, else :data:`GENERATED_SIZE` or the
    source's own. A real source's decoded size is checked either way (a source smaller
    than the least sensor has no detail to resample and broke the board stills
    mid-session, so it is refused before any folder exists).

    Raises
    ------
    FootageError
        Naming the source file and its size.
    """
    if config.generated:
        return config.size or GENERATED_SIZE
    source = Path(config.source)
    width, height = source_size(source)
    lo, hi = MIN_SENSOR_SIDE, MAX_SENSOR_SIDE
    if width < lo or height < lo:
        raise FootageError(
            source,
            f"decoded size {width}x{height} px is below the {lo}x{lo} px a simulated "
            f"sensor needs (the least --size); give a larger source",
        )
    if config.size is None and (width > hi or height > hi):
        raise FootageError(
            source,
            f"decoded size {width}x{height} px is over the {hi} px a simulated sensor side "
            f"may be; give a smaller --size (the source is resampled)",
        )
    return config.size or (width, height)


def _check_memory(
    config: SimulationConfig,
    size: tuple[int, int],
    canvas: tuple[int, int],
    seconds_needed: float | None,
) -> None:
    """Refuse a simulation whose scene would hold more than :data:`MAX_SIMULATION_BYTES`.

    The estimate is the scene's (the generated texture, or a real source's kept frames:
    frames x canvas x 3 channels x bytes) plus one body's recorded sound; movie frames
    themselves are streamed to the encoder.

    Raises
    ------
    SimulationError
        Naming ``--seconds`` and ``--size`` with the estimate and the limit.
    """
    if config.generated:
        assert seconds_needed is not None
        scene = config.seed if config.scene_seed is None else config.scene_seed
        needed = GeneratedScene.memory_bytes(canvas, seconds_needed, scene)
    else:
        needed = source_memory_bytes(Path(config.source), canvas, config.fps, seconds_needed)
    if seconds_needed is not None:
        needed += math.ceil(seconds_needed * config.audio_rate) * 8 * 3  # float64 + noise
    if needed <= MAX_SIMULATION_BYTES:
        return
    if config.seconds is not None:
        length = f"{_setting('seconds', '--seconds')} = {config.seconds:g}"
    elif config.generated:
        length = f"the default {GENERATED_SECONDS:g} s (no --seconds)"
    else:
        length = f"{config.source} at its full length (no --seconds)"

    gib = 2.0**30
    raise SimulationError(
        f"{length} at {size[0]}x{size[1]} px (--size) would need about "
        f"{needed / gib:.1f} GiB of memory, more than the simulator's limit of "
        f"{MAX_SIMULATION_BYTES / gib:.0f} GiB; simulate fewer seconds or a smaller size"
    )


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
    reference, test = bodies
    offset = (reference.start_s - test.start_s) * test.rate
    drift = (test.rate / reference.rate - 1.0) * 1e6
    return {
        "format_version": SIMULATION_FORMAT_VERSION,
        "kind": TRUTH_KIND,
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
