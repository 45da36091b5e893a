"""A pure-Python fake camera bus: several bodies, each with its own file tree.

For two-camera timing and fault injection, which the gphoto2 virtual camera cannot do (it
is one device for every ``Camera`` object and corrupts its heap under two threads).

Bodies live on a process-wide bus configured by :func:`configure_bus` (the rig config's
``[fake]`` table does it for command-line runs). Each body serves files from a folder of
real images/RAWs, or, without one, writes small synthetic DNGs/JPEGs whose EXIF carries the
exposure actually applied, so EXIF checks are exercised. Latency and jitter are slept in
:meth:`FakeCamera.trigger` (``time.sleep`` releases the GIL like python-gphoto2 does).

Simulated footage: :func:`attach_simulation` (done by ``expokit capture`` when the rig
config's ``[fake]`` table names a ``source``) binds bodies to the roles of one
:class:`~expokit.capture.simulator.physics.RigSimulation`; those bodies then serve its physics
instead of the synthetic chart: a shot is a 16-bit PNG still of the scene (or of the
ChArUco board when the simulation's subject is ``board``), a movie is the simulated H.264 +
AAC MP4 of the body's own start time, clock and sound.

Live view (:meth:`FakeCamera.capture_preview`): a JPEG at the body's ``live_view_size``
(default :data:`LIVE_VIEW_SIZE`) of a still world - the simulation's scene at one fixed
instant (or its board), else a procedural texture - seen through the body's adjustable,
known :class:`LiveMisalignment` (roll, shift, scale, keystone, defocus, exposure, white
balance; :meth:`FakeCamera.set_misalignment` turns the screws at run time) and mirrored for
the simulation's test role as the splitter does. See :class:`LiveMisalignment` for how its
figures map onto :func:`expokit.calibration.alignment_check.check_alignment`'s.

Faults (:class:`FakeFaults`): busy (-110) and I/O (-7) errors for the next N operations,
a disconnect after N triggers (the body comes back on another port after a delay), a USB
claim failure on connect (-53), and settings that are accepted but silently not applied.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import itertools
import math
import random
import tempfile
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from expokit.capture.backends.base import (
    Camera,
    CameraBusy,
    CameraDisconnected,
    CameraEvent,
    CameraFile,
    CameraInfo,
    CameraIOError,
    CameraNotFound,
    NotSupported,
    SettingInfo,
    SettingValueError,
    UsbClaimError,
)
from expokit.capture.exposure import SHUTTER_CHOICES
from expokit.capture.simulator import (
    MAX_SEED,
    RigSimulation,
    SensorModel,
    png16_bytes,
    render_board,
)
from expokit.capture.simulator.physics import BOARD
from expokit.core.synthetic import demo_scene, feature_texture, write_dng
from expokit.core.transfer import srgb_encode

APERTURE_CHOICES = ("1.8", "2", "2.8", "4", "5.6", "8", "11", "16", "22")
ISO_CHOICES = ("100", "200", "400", "800", "1600", "3200", "6400")
EV_COMP_CHOICES = tuple(f"{v / 3:g}" if v % 3 == 0 else f"{v / 3:.1f}" for v in range(-9, 10))
IMAGE_FORMATS = ("RAW", "JPEG Fine", "RAW + JPEG Fine")
CAPTURE_TARGETS = ("Internal RAM", "Memory card")
SOURCE_EXTENSIONS = (".jpg", ".jpeg", ".dng", ".nef", ".cr2", ".cr3", ".arw", ".raf", ".png")


@dataclass
class FakeFaults:
    """Faults to inject; counters count down as faults fire."""

    busy: int = 0
    io_error: int = 0
    disconnect_after_triggers: int | None = None
    replug_after_s: float = 0.2
    claim_failure: bool = False
    ignore_settings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A rig file's [fake.cameras] faults table lands here: check each type now, so a
        # mistyped value fails at config load naming the key, not mid-capture.
        for name in ("busy", "io_error"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"faults.{name} = {value!r} must be a whole count >= 0")
        after = self.disconnect_after_triggers
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, int) or after < 1
        ):
            raise ValueError(
                f"faults.disconnect_after_triggers = {after!r} must be a whole count >= 1"
            )
        replug = self.replug_after_s
        if (
            isinstance(replug, bool)
            or not isinstance(replug, int | float)
            or not (math.isfinite(replug) and 0 <= replug <= 600)
        ):
            raise ValueError(f"faults.replug_after_s = {replug!r} must be 0-600 seconds")
        if not isinstance(self.claim_failure, bool):
            raise ValueError(f"faults.claim_failure = {self.claim_failure!r} must be true or false")
        names = self.ignore_settings
        if isinstance(names, str) or not isinstance(names, list | tuple):
            raise ValueError(f"faults.ignore_settings = {names!r} must be a list of setting names")
        if not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"faults.ignore_settings = {names!r} must hold setting names (text)")
        self.ignore_settings = tuple(names)


#: Default live view size ``(width, height)`` of a fake body (about a DSLR's).
LIVE_VIEW_SIZE = (1024, 680)
#: JPEG quality of live view frames.
LIVE_VIEW_QUALITY = 90


def _pair(value: Any, name: str) -> tuple[float, float]:
    x, y = (float(v) for v in value)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return x, y


@dataclass(frozen=True)
class LiveMisalignment:
    """A known misalignment of a fake body's live view, in the conventions of
    :func:`~expokit.calibration.alignment_check.check_alignment` (figures of the body's
    content, on screen with the mirror undone, relative to a perfectly aligned body).

    Set it on the test body; with the reference body at the default (none), a check of the
    pair reports ``roll_deg``, ``scale_pct``, ``shift_px`` and (approximately) ``keystone``
    as given here, ``ev_offset`` = this ``ev_offset`` plus the simulation's test exposure
    (``log2`` of the test body's gain: ``ev_offset - log2(splitter_ratio)`` of the
    simulation config; without one, that of the exposure settings applied to the body)
    and ``white_balance`` = these gains divided
    by their luminance-weighted mean. All figures are in live-view pixels.

    Attributes
    ----------
    roll_deg
        > 0: the content is rotated counter-clockwise on screen (about the centre).
    shift_px
        ``(x, y)``: where the content sits minus where it sits in an aligned body, at the
        centre; x > 0 right, y > 0 down.
    scale_pct
        > 0: the content is larger (a narrower field of view).
    keystone_pct
        ``(horizontal, vertical)``: about how much larger (%) the content is at its right
        edge than at its left edge, and at its bottom than at its top (first order).
    blur_sigma_px
        Defocus: Gaussian blur sigma (px) after the geometry.
    ev_offset
        Exposure of the frames (EV; < 0 darker), on top of the simulated exposure.
    white_balance
        ``(r, g, b)`` gains in linear light.
    pupil_offset_mm
        ``(x, y, z)``: where the body's entrance pupil sits relative to the reference's
        (virtual, through the splitter) pupil, in mm: x right and y down on screen with the
        mirror undone, z toward the scene. Only a world with depth shows it (a
        :class:`LiveDepth` near board, see :func:`set_live_depth`): the near layer then
        moves against the far one, which no homography removes.
    """

    roll_deg: float = 0.0
    shift_px: tuple[float, float] = (0.0, 0.0)
    scale_pct: float = 0.0
    keystone_pct: tuple[float, float] = (0.0, 0.0)
    blur_sigma_px: float = 0.0
    ev_offset: float = 0.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pupil_offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        pupil = tuple(float(v) for v in self.pupil_offset_mm)
        if len(pupil) != 3 or not all(math.isfinite(v) and abs(v) <= 200 for v in pupil):
            raise ValueError(
                f"pupil_offset_mm needs three offsets within +-200 mm, got {self.pupil_offset_mm!r}"
            )
        object.__setattr__(self, "pupil_offset_mm", pupil)
        object.__setattr__(self, "shift_px", _pair(self.shift_px, "shift_px"))
        object.__setattr__(self, "keystone_pct", _pair(self.keystone_pct, "keystone_pct"))
        gains = tuple(float(v) for v in self.white_balance)
        if len(gains) != 3 or not all(math.isfinite(g) and g > 0 for g in gains):
            raise ValueError(f"white_balance needs three gains > 0, got {self.white_balance!r}")
        object.__setattr__(self, "white_balance", gains)
        for name in ("roll_deg", "scale_pct", "blur_sigma_px", "ev_offset"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            object.__setattr__(self, name, value)
        if not abs(self.roll_deg) <= 45:
            raise ValueError(f"roll_deg must be within +-45, got {self.roll_deg:g}")
        if not -50 < self.scale_pct <= 100:
            raise ValueError(f"scale_pct must be within -50..100, got {self.scale_pct:g}")
        if not 0 <= self.blur_sigma_px <= 50:
            raise ValueError(f"blur_sigma_px must be within 0-50, got {self.blur_sigma_px:g}")
        if not abs(self.ev_offset) <= 8:
            raise ValueError(f"ev_offset must be within +-8 EV, got {self.ev_offset:g}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiveMisalignment:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"misalignment: unknown key {', '.join(unknown)} (keys: {', '.join(sorted(names))})"
            )
        return cls(**data)

    def homography(self, size: tuple[int, int]) -> Any:
        """``(3, 3)`` float64 map from this body's (unmirrored) live-view pixels to those of
        an aligned body, live view ``size`` = ``(width, height)``: the ``homography`` that
        ``check_alignment`` should find (flipped test -> reference pixels).

        Content at aligned pixel ``q`` appears at ``T(q) = c + k R P (q - c + s)`` (``c``
        the centre, ``s`` the shift, ``k`` the scale, ``R`` the on-screen counter-clockwise
        roll in y-down pixels, ``P`` the keystone's perspective); the result is ``T^-1``,
        so that ``c - T^-1(c) = s`` exactly.
        """
        import numpy as np

        width, height = size
        cx, cy = (width - 1) / 2, (height - 1) / 2
        k = 1.0 + self.scale_pct / 100.0
        a = math.radians(self.roll_deg)
        cos, sin = math.cos(a), math.sin(a)
        rotate = np.array([[k * cos, k * sin, 0], [-k * sin, k * cos, 0], [0, 0, 1.0]])
        # Magnification ~ w^-3/2 with w = 1 + p x: right/left - 1 ~ -1.5 p width.
        kh, kv = self.keystone_pct
        persp = np.eye(3)
        persp[2, 0] = -kh / 100.0 / (1.5 * max(width - 1, 1))
        persp[2, 1] = -kv / 100.0 / (1.5 * max(height - 1, 1))
        sx, sy = self.shift_px
        forward = (
            np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1.0]])
            @ rotate
            @ persp
            @ np.array([[1, 0, sx - cx], [0, 1, sy - cy], [0, 0, 1.0]])
        )
        inverse = np.linalg.inv(forward)
        return np.asarray(inverse / inverse[2, 2], np.float64)


@dataclass(frozen=True)
class LiveDepth:
    """A world with depth for the fake live view: a ChArUco board (the rig's 7x5) held
    ``near_m`` from the reference pupil in front of the far scene at ``far_m``.

    Both layers are fronto-parallel planes. A body whose entrance pupil is off by
    ``t = pupil_offset_mm`` sees a plane at depth ``Z`` through
    ``q -> c + (q - c) Z / (Z - t_z) - f (t_x, t_y) / (Z - t_z)`` (``c`` the centre, ``f`` the
    focal length in live-view pixels: ``focal_ratio`` times the width, 50 mm on a 36 mm
    sensor by default), before its roll/scale/shift/keystone. So, aligned on the far layer,
    the near layer is displaced by about ``-f t_xy (1/near - 1/far)`` px and larger by
    about ``t_z (1/near - 1/far)``.

    Attributes
    ----------
    near_m, far_m
        Depths of the board and of the scene behind it (m), ``0 < near_m < far_m``.
    board_width
        Width of the board as a share of the live view's width.
    focal_ratio
        Focal length / live-view width.
    """

    near_m: float = 1.0
    far_m: float = 10.0
    board_width: float = 0.45
    focal_ratio: float = 50.0 / 36.0

    def __post_init__(self) -> None:
        if not (0 < self.near_m < self.far_m and math.isfinite(self.far_m)):
            raise ValueError(
                f"live depth: need 0 < near_m < far_m, got {self.near_m}, {self.far_m}"
            )
        if not 0.1 <= self.board_width <= 0.9 or not 0.2 <= self.focal_ratio <= 10:
            raise ValueError(
                f"live depth: board_width must be 0.1-0.9 and focal_ratio 0.2-10, got {self}"
            )

    def plane_map(self, depth_m: float, pupil_mm: tuple[float, float, float],
                  size: tuple[int, int]) -> Any:  # fmt: skip
        """``(3, 3)``: aligned live-view pixel -> pixel of a body with pupil offset
        ``pupil_mm`` for a plane at ``depth_m`` (see the class docstring)."""
        import numpy as np

        width, height = size
        cx, cy = (width - 1) / 2, (height - 1) / 2
        f = self.focal_ratio * width
        tx, ty, tz = (v / 1000.0 for v in pupil_mm)
        k = depth_m / (depth_m - tz)
        dx, dy = -f * tx / (depth_m - tz), -f * ty / (depth_m - tz)
        return np.array([[k, 0, cx - k * cx + dx], [0, k, cy - k * cy + dy], [0, 0, 1.0]])

    def board_layer(self, size: tuple[int, int]) -> tuple[Any, Any]:
        """Linear board image and its coverage mask (float32, 0..1) in aligned pixels: the
        board centred a little left of and above the frame's centre (so the far scene shows
        around it)."""
        import cv2
        import numpy as np

        width, height = size
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, BOARD["dictionary"]))
        board = cv2.aruco.CharucoBoard(
            (BOARD["columns"], BOARD["rows"]), BOARD["square_size"], BOARD["marker_size"],
            dictionary,
        )  # fmt: skip
        board_w = int(self.board_width * width)
        board_h = int(board_w * BOARD["rows"] / BOARD["columns"])
        margin = max(4, board_w // 24)
        image = board.generateImage((board_w * 4, board_h * 4), marginSize=margin * 4)
        image = cv2.resize(image, (board_w, board_h), interpolation=cv2.INTER_AREA)
        layer = np.zeros((height, width, 3), np.float32)
        mask = np.zeros((height, width), np.float32)
        x0 = int(0.42 * width - board_w / 2)
        y0 = int(0.45 * height - board_h / 2)
        patch = 0.03 + 0.77 * (image.astype(np.float32) / 255)
        layer[y0 : y0 + board_h, x0 : x0 + board_w] = patch[:, :, None]
        mask[y0 : y0 + board_h, x0 : x0 + board_w] = 1.0
        return layer, mask


@dataclass
class FakeCameraSpec:
    """One fake body. ``vendor`` picks setting names: ``canon`` (aperture, imageformat,
    movierecordtarget) or ``nikon`` (f-number, imagequality, movie)."""

    serial: str
    model: str = "Fake Nikon D750"
    vendor: str = "nikon"
    source_dir: str | None = None
    latency_s: float = 0.0
    jitter_s: float = 0.0
    clock_offset_s: float = 0.0
    image_size: tuple[int, int] = (64, 96)
    seed: int = 0
    faults: FakeFaults = field(default_factory=FakeFaults)
    #: ``(width, height)`` of live view frames (note: ``image_size`` is ``(height, width)``).
    live_view_size: tuple[int, int] = LIVE_VIEW_SIZE
    #: The body's live view misalignment at power-on (changed by ``set_misalignment``).
    misalignment: LiveMisalignment = field(default_factory=LiveMisalignment)

    #: Sides (px) of ``image_size`` and ``live_view_size``: the synthetic chart needs 64.
    MIN_SIDE = 64
    MAX_SIDE = 8192
    #: Most seconds of latency / jitter (a trigger that long is a hung camera, not a test).
    MAX_DELAY_S = 60.0
    #: Most camera clock offset from the host (seconds): a day.
    MAX_CLOCK_OFFSET_S = 86400.0

    def __post_init__(self) -> None:
        # Every field may come from a rig file's [[fake.cameras]] table: check types and
        # ranges here, so a bad value fails at config load ("fake.cameras #N: ...") rather
        # than as a crash mid-capture.
        if isinstance(self.serial, int) and not isinstance(self.serial, bool):
            self.serial = str(self.serial)  # as RoleConfig takes it
        for name in ("serial", "model", "vendor"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{name} = {value!r} must be non-empty text")
        if self.vendor not in ("nikon", "canon"):
            raise ValueError(f"vendor = {self.vendor!r} must be 'nikon' or 'canon'")
        if self.source_dir is not None and not isinstance(self.source_dir, str):
            raise ValueError(f"source_dir = {self.source_dir!r} must be a folder path (text)")
        for name, low, high in (
            ("latency_s", 0.0, self.MAX_DELAY_S),
            ("jitter_s", 0.0, self.MAX_DELAY_S),
            ("clock_offset_s", -self.MAX_CLOCK_OFFSET_S, self.MAX_CLOCK_OFFSET_S),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} = {value!r} must be a number of seconds")
            if not (math.isfinite(value) and low <= value <= high):
                raise ValueError(f"{name} = {value!r} must be within {low:g}-{high:g} s")

        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"seed = {seed!r} must be an integer within 0-{MAX_SEED}")
        self.image_size = self._size(self.image_size, "image_size", "[height, width]")
        self.live_view_size = self._size(self.live_view_size, "live_view_size", "[width, height]")
        if not isinstance(self.faults, FakeFaults):
            raise ValueError(f"faults = {self.faults!r} must be a table of faults")
        if not isinstance(self.misalignment, LiveMisalignment):
            raise ValueError(f"misalignment = {self.misalignment!r} must be a table")

    @classmethod
    def _size(cls, value: Any, name: str, form: str) -> tuple[int, int]:
        """``value`` as two whole pixel counts within :attr:`MIN_SIDE`-:attr:`MAX_SIDE`."""
        if (
            not isinstance(value, list | tuple)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            raise ValueError(f"{name} = {value!r} must be {form} in whole pixels")
        a, b = value
        if not (cls.MIN_SIDE <= a <= cls.MAX_SIDE and cls.MIN_SIDE <= b <= cls.MAX_SIDE):
            raise ValueError(f"{name} {a}x{b}: each side must be {cls.MIN_SIDE}-{cls.MAX_SIDE} px")
        return a, b

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FakeCameraSpec:
        values = dict(data)
        faults = values.pop("faults", {})
        if not isinstance(faults, dict):
            raise ValueError(f"faults = {faults!r} must be a table (busy, io_error, ...)")
        if isinstance(values.get("misalignment"), dict):
            values["misalignment"] = LiveMisalignment.from_dict(values["misalignment"])
        return cls(**values, faults=FakeFaults(**faults))


class _Body:
    """State of one physical fake body, shared by every FakeCamera object bound to it."""

    def __init__(self, spec: FakeCameraSpec, port: str) -> None:
        self.spec = spec
        self.port = port
        self.lock = threading.Lock()
        self.plugged = True
        self.replug_at: float | None = None
        self.generation = 0  # bumps on every replug: handles from before go stale
        self.rng = random.Random(spec.seed)
        self.files: dict[str, bytes] = {}
        self.counter = itertools.count(1)
        self.source_cycle = itertools.count()
        self.shots = itertools.count()  # each shot gets its own sensor noise, as on a real body
        self.sources = self._list_sources()
        self.movie_started: float | None = None
        self.misalignment = spec.misalignment
        self.previews = itertools.count()
        canon = spec.vendor == "canon"
        self.settings: dict[str, SettingInfo] = {}
        for name, value, choices in (
            ("shutterspeed", "1/125", SHUTTER_CHOICES),
            ("aperture" if canon else "f-number", "8", APERTURE_CHOICES),
            ("iso", "100", ISO_CHOICES),
            ("exposurecompensation", "0", EV_COMP_CHOICES),
            ("imageformat" if canon else "imagequality", "RAW", IMAGE_FORMATS),
            ("capturetarget", "Memory card", CAPTURE_TARGETS),
            ("movierecordtarget" if canon else "movie", "None" if canon else "0",
             ("Card", "None") if canon else ("0", "1")),
        ):  # fmt: skip
            self.settings[name] = SettingInfo(name, value, choices, False, "radio")
        self.settings["serialnumber"] = SettingInfo("serialnumber", spec.serial, (), True, "text")
        # What the sensor really used (differs from settings when a setting is ignored).
        self.applied = {name: info.value for name, info in self.settings.items()}

    def _list_sources(self) -> list[Path]:
        if not self.spec.source_dir:
            return []
        folder = Path(self.spec.source_dir)
        return sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SOURCE_EXTENSIONS
        )

    def check_plugged(self) -> None:
        if not self.plugged and self.replug_at is not None and time.monotonic() >= self.replug_at:
            self.plugged = True
            self.replug_at = None
            self.generation += 1
            self.port = _BUS.next_port()


class _Bus:
    """The process-wide set of fake bodies (the fake "USB bus")."""

    def __init__(self) -> None:
        self.bodies: dict[str, _Body] = {}
        self.ports = itertools.count(1)
        self.lock = threading.Lock()
        self.simulation: _Simulation | None = None
        self.live_depth: LiveDepth | None = None

    def next_port(self) -> str:
        return f"usb:fake,{next(self.ports):03d}"

    def configure(self, specs: list[FakeCameraSpec]) -> None:
        with self.lock:
            self.bodies = {spec.serial: _Body(spec, self.next_port()) for spec in specs}
            self.simulation = None
            self.live_depth = None

    def plugged(self) -> list[_Body]:
        for body in self.bodies.values():
            body.check_plugged()
        return [b for b in self.bodies.values() if b.plugged]


@dataclass
class _Simulation:
    """A simulation served by some bodies of the bus (see :func:`attach_simulation`)."""

    rig: RigSimulation
    roles: dict[str, str]  # serial -> role
    subject: str = "scene"
    movies: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> truth entry
    _live_scene: Any = field(default=None, repr=False)

    def role_of(self, body: _Body) -> str | None:
        return self.roles.get(body.spec.serial)

    def live_scene(self) -> Any:
        """Linear canvas the live view shows: the board, or the scene at the first still's
        time (a still world, so bodies polled at different moments agree)."""
        if self._live_scene is None:
            rig = self.rig
            if self.subject == "board":
                self._live_scene = render_board(rig.canvas)
            else:
                self._live_scene = rig.footage.frame_at(rig.still_time(0))
        return self._live_scene


_BUS = _Bus()
SIMULATION_SUBJECTS = ("scene", "board")


def attach_simulation(rig: RigSimulation, roles: dict[str, str], subject: str = "scene") -> None:
    """Make the bodies with the serials of ``roles`` (serial -> ``reference``/``test``)
    serve ``rig`` (a :class:`~expokit.capture.simulator.physics.RigSimulation`): stills of the
    ``subject`` (``scene`` or ``board``) and its movies. Reconfiguring the bus detaches it.
    """
    if subject not in SIMULATION_SUBJECTS:
        raise ValueError(f"subject must be one of {SIMULATION_SUBJECTS}, got {subject!r}")
    missing = sorted(set(roles) - set(_BUS.bodies))
    if missing:
        raise CameraNotFound(f"no fake body with serial {', '.join(missing)} to simulate")
    _BUS.simulation = _Simulation(rig, dict(roles), subject)


def simulated_movies() -> dict[str, dict[str, Any]]:
    """``truth.json["bodies"]`` entries of the movies the attached simulation made."""
    return dict(_BUS.simulation.movies) if _BUS.simulation is not None else {}


def _simulated_role(body: _Body) -> tuple[_Simulation, str] | None:
    simulation = _BUS.simulation
    if simulation is None:
        return None
    role = simulation.role_of(body)
    return None if role is None else (simulation, role)


def configure_bus(specs: list[FakeCameraSpec] | list[dict[str, Any]]) -> None:
    """Replace the fake bus with bodies made from ``specs`` (dataclasses or dicts)."""
    _BUS.configure(
        [s if isinstance(s, FakeCameraSpec) else FakeCameraSpec.from_dict(s) for s in specs]
    )


def set_live_depth(depth: LiveDepth | None) -> None:
    """Give the live view's world depth (a near board, :class:`LiveDepth`) or take it away
    (``None``); every body shows it from its next frame. Reconfiguring the bus removes it."""
    _BUS.live_depth = depth


def set_misalignment(
    serial: str, misalignment: LiveMisalignment | None = None, **changes: Any
) -> LiveMisalignment:
    """Set the live view misalignment of the body ``serial`` (``misalignment``, else its
    current one, with ``changes`` applied: field names of :class:`LiveMisalignment`); returns
    the new one. Takes effect on the next frame of every handle on that body."""
    body = _BUS.bodies.get(serial)
    if body is None:
        raise CameraNotFound(f"no fake body with serial {serial}")
    with body.lock:
        base = misalignment if misalignment is not None else body.misalignment
        body.misalignment = dataclasses.replace(base, **changes) if changes else base
        return body.misalignment


def body_for(serial: str) -> Any:
    """The internal state of a body (tests use it to inject faults mid-run)."""
    return _BUS.bodies[serial]


def list_cameras(**_: Any) -> list[CameraInfo]:
    return [CameraInfo(b.spec.model, b.port, b.spec.serial, "fake") for b in _BUS.plugged()]


def make_camera(serial: str | None = None, **_: Any) -> FakeCamera:
    return FakeCamera(serial)


class FakeCamera(Camera):
    """A handle on one fake body (see the module docstring)."""

    backend = "fake"

    def __init__(self, serial: str | None = None) -> None:
        self.serial = serial
        self._body: _Body | None = None
        self._generation = -1
        self._events: deque[CameraEvent] = deque()

    # -- connection -------------------------------------------------------------------
    def connect(self) -> None:
        bodies = _BUS.plugged()
        if self.serial is None:
            if not bodies:
                raise CameraNotFound("no fake camera connected")
            body = bodies[0]
        else:
            matches = [b for b in bodies if b.spec.serial == self.serial]
            if not matches:
                found = ", ".join(b.spec.serial for b in bodies) or "none"
                raise CameraNotFound(
                    f"no camera with serial {self.serial} is connected (connected: {found})"
                )
            body = matches[0]
        if body.spec.faults.claim_failure:
            raise UsbClaimError(f"{body.spec.model}: {UsbClaimError.HINT}", code=-53)
        self._body = body
        self._generation = body.generation
        self._events.clear()

    def disconnect(self) -> None:
        self._body = None

    @property
    def is_connected(self) -> bool:
        return self._body is not None

    def _live(self, inject: bool = False) -> _Body:
        body = self._body
        if body is None:
            raise CameraDisconnected("fake camera is not connected")
        body.check_plugged()
        if not body.plugged or body.generation != self._generation:
            raise CameraDisconnected(f"{body.spec.model} ({body.spec.serial}) disconnected")
        faults = body.spec.faults
        if not inject:  # busy/I-O faults hit the shooting path: trigger and download
            return body
        if faults.busy > 0:
            faults.busy -= 1
            raise CameraBusy(f"{body.spec.model}: camera busy", code=-110)
        if faults.io_error > 0:
            faults.io_error -= 1
            raise CameraIOError(f"{body.spec.model}: I/O problem", code=-7)
        return body

    @property
    def info(self) -> CameraInfo:
        body = self._body
        if body is None:
            raise CameraDisconnected("fake camera is not connected")
        return CameraInfo(body.spec.model, body.port, body.spec.serial, "fake")

    # -- settings ---------------------------------------------------------------------
    def list_settings(self) -> dict[str, SettingInfo]:
        return dict(self._live().settings)

    def get_setting(self, name: str) -> str:
        body = self._live()
        if name not in body.settings:
            raise NotSupported(f"{name} not supported by {body.spec.model}")
        return body.settings[name].value

    def set_setting(self, name: str, value: str) -> None:
        body = self._live()
        info = body.settings.get(name)
        if info is None or info.readonly:
            raise NotSupported(f"{name} not supported by {body.spec.model}")
        value = str(value)
        if info.choices and value not in info.choices:
            raise SettingValueError(
                f"{body.spec.model}: {value!r} is not a value of {name}; allowed: "
                + ", ".join(info.choices)
            )
        with body.lock:
            body.settings[name] = SettingInfo(name, value, info.choices, False, info.kind)
            if name not in body.spec.faults.ignore_settings:
                body.applied[name] = value

    # -- capture ----------------------------------------------------------------------
    def trigger(self) -> None:
        body = self._live(inject=True)
        delay = body.spec.latency_s + body.rng.uniform(-1, 1) * body.spec.jitter_s
        time.sleep(max(0.0, delay))
        faults = body.spec.faults
        with body.lock:
            name = f"DSC_{next(body.counter):04d}"
            data, ext = self._make_image(body)
            file = CameraFile("/store_00010001/DCIM/100FAKE", f"{name}{ext}")
            body.files[file.path] = data
        self._events.append(CameraEvent("file_added", file))
        self._events.append(CameraEvent("capture_complete"))
        if faults.disconnect_after_triggers is not None:
            faults.disconnect_after_triggers -= 1
            if faults.disconnect_after_triggers <= 0:
                faults.disconnect_after_triggers = None
                body.plugged = False
                body.replug_at = time.monotonic() + faults.replug_after_s

    def capture(self, timeout_s: float) -> CameraFile:
        self.trigger()
        return self.wait_for_file(timeout_s)

    def wait_for_event(self, timeout_s: float) -> CameraEvent:
        self._live()
        if self._events:
            return self._events.popleft()
        time.sleep(min(timeout_s, 0.01))
        return CameraEvent("timeout")

    def download(self, file: CameraFile) -> bytes:
        body = self._live(inject=True)
        try:
            return body.files[file.path]
        except KeyError:
            raise CameraIOError(f"{body.spec.model}: no file {file.path}") from None

    # -- live view --------------------------------------------------------------------
    @property
    def misalignment(self) -> LiveMisalignment:
        """The body's current live view misalignment."""
        return self._live().misalignment

    def set_misalignment(
        self, misalignment: LiveMisalignment | None = None, **changes: Any
    ) -> LiveMisalignment:
        """Turn the screws: see the module-level :func:`set_misalignment`."""
        return set_misalignment(self._live().spec.serial, misalignment, **changes)

    def capture_preview(self) -> bytes:
        """One live view frame (JPEG, ``live_view_size``); busy/I-O faults apply."""
        body = self._live(inject=True)
        with body.lock:
            frame = next(body.previews)
            misalignment = body.misalignment
        return _live_view_jpeg(body, misalignment, frame)

    # -- movie ------------------------------------------------------------------------
    def _movie_setting(self, body: _Body) -> str:
        return "movierecordtarget" if body.spec.vendor == "canon" else "movie"

    def start_movie(self) -> None:
        body = self._live()
        setting = self._movie_setting(body)
        self.set_setting(setting, "Card" if setting == "movierecordtarget" else "1")
        body.movie_started = time.monotonic()

    def stop_movie(self) -> None:
        body = self._live()
        if body.movie_started is None:
            raise CameraIOError(f"{body.spec.model}: no movie is recording")
        seconds = time.monotonic() - body.movie_started
        body.movie_started = None
        setting = self._movie_setting(body)
        self.set_setting(setting, "None" if setting == "movierecordtarget" else "0")
        simulated = _simulated_role(body)
        with body.lock:
            ext = ".avi" if simulated is None else ".MP4"
            file = CameraFile("/store_00010001/DCIM/100FAKE", f"MOV_{next(body.counter):04d}{ext}")
            if simulated is None:
                body.files[file.path] = _make_movie(seconds, body.spec.image_size)
            else:
                body.files[file.path] = _simulated_movie(*simulated)
        self._events.append(CameraEvent("file_added", file))

    def camera_time(self) -> dt.datetime | None:
        body = self._live()
        return dt.datetime.now() + dt.timedelta(seconds=body.spec.clock_offset_s)

    # -- content ----------------------------------------------------------------------
    def _make_image(self, body: _Body) -> tuple[bytes, str]:
        """Bytes of the next shot and its extension; EXIF carries the *applied* exposure."""
        fmt_name = "imageformat" if body.spec.vendor == "canon" else "imagequality"
        raw = body.applied.get(fmt_name, "RAW").startswith("RAW")
        simulated = _simulated_role(body)
        if simulated is not None:
            return _simulated_still(body, *simulated), ".PNG"
        if body.sources:
            source = body.sources[next(body.source_cycle) % len(body.sources)]
            return source.read_bytes(), source.suffix.upper()
        exposure = _shutter_seconds(body.applied["shutterspeed"])
        aperture_name = "aperture" if body.spec.vendor == "canon" else "f-number"
        f_number = float(body.applied[aperture_name])
        iso = int(body.applied["iso"])
        shot = next(body.shots)
        if raw:
            return _synthetic_dng(body, exposure, f_number, iso, shot), ".DNG"
        return _synthetic_jpeg(body, exposure, f_number, iso, shot), ".JPG"


def _shutter_seconds(text: str) -> float:
    if "/" in text:
        num, den = text.split("/")
        return float(num) / float(den)
    return float(text)


def _exposure_gain(exposure: float, f_number: float, iso: int) -> float:
    """Brightness of the exposure actually applied, relative to 1/125 s, f/8, ISO 100."""
    return (exposure / (1 / 125)) * (8.0 / f_number) ** 2 * (iso / 100)


def _applied_gain(body: _Body) -> float:
    """:func:`_exposure_gain` of the body's applied shutter, aperture and ISO (1 where one
    of them is not a number, e.g. ``bulb`` or ``auto``)."""
    aperture_name = "aperture" if body.spec.vendor == "canon" else "f-number"
    try:
        return _exposure_gain(
            _shutter_seconds(body.applied["shutterspeed"]),
            float(body.applied[aperture_name]),
            int(body.applied["iso"]),
        )
    except (KeyError, ValueError, ZeroDivisionError):
        return 1.0


def _scene(body: _Body, exposure: float, f_number: float, iso: int) -> Any:
    import numpy as np

    height, width = body.spec.image_size
    gain = _exposure_gain(exposure, f_number, iso)
    return np.clip(demo_scene("chart", height, width) * gain, 0, 4)


#: Read noise of the fake sensor in DN (of 4095): small enough for exact EV checks, large
#: enough that no two shots are byte-identical (a real camera never repeats a frame).
FAKE_READ_NOISE_DN = 1.0


def _shot_seed(body: _Body, shot: int) -> int:
    return (body.spec.seed * 1_000_003 + zlib.crc32(body.spec.serial.encode()) + shot) % 2**31


def _synthetic_dng(body: _Body, exposure: float, f_number: float, iso: int, shot: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shot.dng"
        write_dng(
            path, _scene(body, exposure, f_number, iso), make="expokit", model=body.spec.model,
            exposure_time=exposure, iso=iso, f_number=f_number,
            noise_sigma=FAKE_READ_NOISE_DN, seed=_shot_seed(body, shot),
        )  # fmt: skip
        return path.read_bytes()


def _synthetic_jpeg(body: _Body, exposure: float, f_number: float, iso: int, shot: int) -> bytes:
    import numpy as np
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    linear = _scene(body, exposure, f_number, iso)
    noise = np.random.default_rng(_shot_seed(body, shot)).normal(
        0, FAKE_READ_NOISE_DN / 4095, linear.shape
    )
    rgb = (srgb_encode(np.clip(linear + noise, 0, 1)) * 255).round()
    image = Image.fromarray(rgb.astype(np.uint8))
    exif = Image.Exif()
    exif[0x010F] = "expokit"  # Make
    exif[0x0110] = body.spec.model  # Model
    sub = exif.get_ifd(0x8769)  # Exif IFD
    sub[0x829A] = IFDRational(Fraction(exposure).limit_denominator(100000))  # ExposureTime
    sub[0x829D] = IFDRational(Fraction(f_number).limit_denominator(100))  # FNumber
    sub[0x8827] = iso  # ISOSpeedRatings
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def _make_movie(seconds: float, size: tuple[int, int]) -> bytes:
    """A small MJPEG AVI of ``seconds`` at 10 fps with a flash at the start."""
    import cv2
    import numpy as np

    height, width = size
    frames = max(1, round(seconds * 10))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "movie.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10.0, (width, height))
        for index in range(frames):
            level = 240 if index == 0 else 40 + (index * 7) % 60
            writer.write(np.full((height, width, 3), level, np.uint8))
        writer.release()
        return path.read_bytes()


def _simulated_still(body: _Body, simulation: _Simulation, role: str) -> bytes:
    """The next still of a simulated body: the board, or the scene at the scene time of
    this body's next shot (both bodies of a pair count shots alike, so they agree)."""
    rig = simulation.rig
    shot = next(body.shots)
    if simulation.subject == "board":
        return png16_bytes(rig.board(role))
    return png16_bytes(rig.still(role, rig.still_time(shot)))


def _simulated_movie(simulation: _Simulation, role: str) -> bytes:
    """The simulated movie of ``role``: the simulation's length (``capture video
    --seconds``), not the wall time between start and stop."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "movie.mp4"
        simulation.movies[role] = simulation.rig.movie(role, path)
        return path.read_bytes()


def _live_view_jpeg(body: _Body, misalignment: LiveMisalignment, frame: int) -> bytes:
    """Live view frame ``frame`` of ``body`` through ``misalignment`` (see the module
    docstring): geometry, defocus, exposure and white balance in linear light, the sensor's
    noise, the mirror of the test role, sRGB JPEG."""
    import cv2
    import numpy as np

    width, height = body.spec.live_view_size
    simulated = _simulated_role(body)
    if simulated is None:
        scene = feature_texture(width, height, seed=body.spec.seed)
        view = np.eye(3)  # live view pixel -> scene pixel
        # Exposure simulation: the frame is as bright as the applied settings make a shot.
        gain, sensor, flip = _applied_gain(body), SensorModel(), False
        seed = _shot_seed(body, 0)  # two bodies never share a noise pattern
    else:
        simulation, role = simulated
        rig = simulation.rig
        scene = simulation.live_scene()
        # The aligned view of every body is the reference body's, scaled to fill the frame.
        sensor_w, sensor_h = rig.size
        s = min(sensor_w / width, sensor_h / height)
        to_sensor = np.array([
            [s, 0, (sensor_w - 1) / 2 - s * (width - 1) / 2],
            [0, s, (sensor_h - 1) / 2 - s * (height - 1) / 2],
            [0, 0, 1.0],
        ])  # fmt: skip
        view = rig.bodies["reference"].view @ to_sensor
        if s > 1:  # downscaling: low-pass the scene first (warpPerspective has no area mode)
            scene = cv2.GaussianBlur(scene, (0, 0), 0.5 * math.sqrt(s * s - 1))
        sim_body = rig.bodies[role]
        gain, sensor, flip = sim_body.gain, sim_body.sensor, sim_body.flip
        seed = rig.config.seed * 1_000_003 + (17 if role == "test" else 5)
    size = (width, height)
    body_to_aligned = misalignment.homography(size)
    depth = _BUS.live_depth
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    pupil = misalignment.pupil_offset_mm
    far = np.eye(3) if depth is None else np.linalg.inv(depth.plane_map(depth.far_m, pupil, size))
    image = cv2.warpPerspective(
        np.ascontiguousarray(scene, np.float32), view @ far @ body_to_aligned, size,
        flags=flags, borderMode=cv2.BORDER_REFLECT,
    )  # fmt: skip
    if depth is not None:
        near = np.linalg.inv(depth.plane_map(depth.near_m, pupil, size)) @ body_to_aligned
        layer, mask = depth.board_layer(size)
        board = cv2.warpPerspective(layer, near, size, flags=flags)
        cover = np.clip(cv2.warpPerspective(mask, near, size, flags=cv2.INTER_LINEAR
                                            | cv2.WARP_INVERSE_MAP), 0, 1)[:, :, None]  # fmt: skip
        image = image * (1 - cover) + board * cover
    if misalignment.blur_sigma_px > 0:
        image = cv2.GaussianBlur(image, (0, 0), misalignment.blur_sigma_px)
    gains = np.array(misalignment.white_balance, np.float32)
    image = image * np.float32(gain * 2.0**misalignment.ev_offset) * gains
    rng = np.random.default_rng([seed % 2**31, frame])
    well = sensor.full_well_e
    electrons = np.maximum(image * well, 0.0)
    noisy = electrons + rng.standard_normal(electrons.shape, np.float32) * np.sqrt(
        electrons + sensor.read_noise_e**2
    )
    linear = np.clip(noisy / well, 0.0, 1.0)
    if flip:
        linear = linear[:, ::-1]
    rgb = (np.asarray(srgb_encode(linear)) * 255).round().astype(np.uint8)
    ok, encoded = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, LIVE_VIEW_QUALITY]
    )
    if not ok:
        raise CameraIOError(f"{body.spec.model}: could not encode a live view frame")
    return bytes(encoded.tobytes())
