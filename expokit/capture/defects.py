"""Known QA defects injected into a simulated rig session (``expokit simulate --defect``).

A clean simulated session is what a perfect beam-splitter rig records. To measure what the
dataset QA flags catch (and what they raise on clean pairs) the simulator can also record
the faults real rigs have, each at a known magnitude, into chosen still pairs and movie
frames, and write exactly what it did into ``truth.json["defects"]``
(:class:`DefectRecord`). :mod:`expokit.curation.truth` maps manifest rows back to them.

Kinds (:data:`DEFECT_KINDS`; "one camera" defects hit the test camera unless told
``reference``; "scene" defects are seen by both cameras):

==================  ========  =========  ==================================================
kind                unit      who        what the camera records
==================  ========  =========  ==================================================
``misregistration`` px        one        its image shifted by the magnitude (direction
                                         ``angle``, else from the seed) beyond the rig's
                                         homography (pairs only, never the board)
``light_change``    fraction  one        the scene light during its exposure x (1 + m)
``gain``            EV        one        its exposure m EV brighter (EXIF/journal unchanged)
``time_offset``     s         one        the scene at time t + m instead of t (beyond sync)
``flicker``         fraction  one        its exposure x (1 + m sin(2 pi hz t + phase)), t on
                                         its own clock (a movie frame k at k / fps)
``scene_flicker``   fraction  scene      the scene light x (1 + m sin(2 pi hz tau + phase)),
                                         tau the scene time (mains beat)
``clipping``        EV        one        over-exposed by m EV (clips at its white level)
``defocus``         px        one        the scene blurred: Gaussian sigma m (``shape=disc``:
                                         a uniform disc of radius m)
``light_ramp``      EV/s      scene      negative control: the scene light x 2 ** (m (tau -
                                         tau0)), a steady ramp centred on its span
``motion``          px/s      scene      negative control: a textured disc crossing the
                                         scene at m px/s (content motion)
==================  ========  =========  ==================================================

Every effect acts in linear light before the sensor's noise and clipping, so noise stays
physical; the camera's noise generator draws the same numbers with or without defects, so
the shots no defect touches are byte-identical to those of the same session without
defects. Flicker is sampled at the exposure instant (no shutter integration): a 100 Hz
light filmed at 24 fps shows its 4 Hz beat.

``--defect`` syntax (:func:`parse_defect`)::

    KIND:MAGNITUDE[@TERM[,TERM...]]

where each TERM is a camera (``test``, ``reference``), a place (``stills``: every still
pair; ``still=N`` or ``still=N-M``: still pairs by their 1-based number in shooting order,
repeatable; ``video``: every movie frame; ``frames=A-B``: movie frames A to B, 0-based,
inclusive, of the defect's camera, of the reference movie for a scene defect) or a
parameter (``hz=F``, ``phase=DEG`` for the flickers; ``angle=DEG`` for
``misregistration``; ``shape=gaussian|disc`` for ``defocus``). Without a place a defect
hits every still pair and every frame. Examples: ``gain:0.3@still=2``,
``misregistration:2.5@still=1-3,angle=90``, ``flicker:0.05@reference,video,hz=3``,
``scene_flicker:0.04@frames=0-47,hz=100``, ``light_ramp:0.2``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from expokit.core.errors import ExpokitError

Image = npt.NDArray[np.float32]
Role = Literal["reference", "test"]
ROLES: tuple[Role, ...] = ("reference", "test")
#: Every still pair / every frame (a place of :class:`DefectSpec`).
ALL: Literal["all"] = "all"


class DefectError(ExpokitError):
    """A defect cannot be injected as asked; the message names the defect and the problem."""


@dataclass(frozen=True)
class DefectKind:
    """What one defect kind is: its unit, who sees it, its limits and parameters.

    Attributes
    ----------
    name
        The kind, as written in ``--defect``.
    unit
        Unit of the magnitude.
    scope
        ``"camera"``: one camera records it; ``"scene"``: both cameras see it.
    model
        What the affected camera records, in words (copied into ``truth.json``).
    largest
        Largest magnitude accepted (inclusive, unless ``below_largest``).
    below_largest
        The magnitude must stay strictly below ``largest`` (flicker amplitudes < 1).
    params
        ``KEY=VALUE`` parameters the kind takes.
    control
        A negative control: no QA flag should be raised by it.
    """

    name: str
    unit: str
    scope: Literal["camera", "scene"]
    model: str
    largest: float
    below_largest: bool = False
    params: tuple[str, ...] = ()
    control: bool = False


DEFECT_KINDS: dict[str, DefectKind] = {
    k.name: k
    for k in (
        DefectKind("misregistration", "px", "camera",
                   "image shifted by magnitude px in direction angle_deg (sensor pixels, "
                   "before the test camera's mirror), beyond the rig's homography",
                   64.0, params=("angle",)),
        DefectKind("light_change", "fraction", "camera",
                   "scene light during this camera's exposure multiplied by 1 + magnitude",
                   10.0),
        DefectKind("gain", "EV", "camera",
                   "exposure multiplied by 2 ** magnitude (EXIF and journal unchanged)", 8.0),
        DefectKind("time_offset", "s", "camera",
                   "records the scene at scene time t + magnitude instead of t (beyond the "
                   "sync; audio unchanged)", 5.0),
        DefectKind("flicker", "fraction", "camera",
                   "exposure multiplied by 1 + magnitude * sin(2 pi hz t + phase), t the "
                   "camera's own time (movie frame k at k / fps s; a still at its scene time)",
                   1.0, below_largest=True, params=("hz", "phase")),
        DefectKind("scene_flicker", "fraction", "scene",
                   "scene light multiplied by 1 + magnitude * sin(2 pi hz tau + phase), tau "
                   "the scene time each camera samples", 1.0, below_largest=True,
                   params=("hz", "phase")),
        DefectKind("clipping", "EV", "camera",
                   "over-exposed: exposure multiplied by 2 ** magnitude, clipped at white",
                   8.0),
        DefectKind("defocus", "px", "camera",
                   "scene blurred before the sensor: Gaussian of sigma magnitude px, or a "
                   "uniform disc of radius magnitude px (shape disc)", 32.0,
                   params=("shape",)),
        DefectKind("light_ramp", "EV/s", "scene",
                   "negative control: scene light multiplied by 2 ** (magnitude * (tau - "
                   "tau0_s)), a steady ramp seen by both cameras", 2.0, control=True),
        DefectKind("motion", "px/s", "scene",
                   "negative control: a textured disc (radius_px) moving at magnitude px/s, "
                   "bouncing horizontally between x = radius_px and canvas width - radius_px "
                   "at height y_px, x = x0_px at tau0_s (canvas pixels)", 2000.0,
                   control=True),
    )
}  # fmt: skip
#: Default flicker frequencies (Hz): a slow camera flicker and a visible beat, both far
#: from simple fractions of the usual frame rates (12, 20, 24, 25, 30 fps), whose samples
#: would repeat a few phases only (3 Hz at 12 fps gives 0, +1, 0, -1, ...).
DEFAULT_HZ = {"flicker": 2.3, "scene_flicker": 5.3}
MAX_HZ = 1000.0
#: Radius of the ``motion`` object, as a fraction of the canvas's shorter side.
MOTION_RADIUS = 0.12


def _number(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DefectError(f"--defect {spec!r}: {what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DefectError(f"--defect {spec!r}: {what} must be finite, got {text!r}")
    return value


def _range(text: str, what: str, spec: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    if not first.strip().isdigit() or (dash and not last.strip().isdigit()):
        raise DefectError(
            f"--defect {spec!r}: {what}={text!r} is not N or N-M (non-negative integers)"
        )
    lo, hi = int(first), int(last) if dash else int(first)
    if hi < lo:
        raise DefectError(f"--defect {spec!r}: {what}={text!r} ends before it starts")
    return lo, hi


@dataclass(frozen=True)
class DefectSpec:
    """One defect to inject: what (``kind``, ``magnitude``), who (``camera``), where.

    Attributes
    ----------
    kind
        A key of :data:`DEFECT_KINDS`.
    magnitude
        In the kind's unit; finite, ``>= 0``, at most the kind's ``largest``.
    camera
        ``"reference"`` or ``"test"`` for a camera defect (``None``: the test camera); must
        be ``None`` for a scene defect (both cameras see it).
    stills
        1-based numbers of the still pairs hit (in shooting order), ``"all"``, or ``None``
        (no still pair).
    frames
        ``(first, last)`` movie frames hit (0-based, inclusive; frames of the defect's
        camera, of the reference movie for a scene defect), ``"all"``, or ``None``.
    hz, phase_deg
        Flicker frequency (Hz; default :data:`DEFAULT_HZ`) and phase (degrees; default
        drawn from the seed). Flicker kinds only.
    angle_deg
        Direction of a ``misregistration`` shift (degrees, image x to the right, y down;
        default drawn from the seed).
    shape
        ``defocus`` kernel: ``"gaussian"`` (default; magnitude is sigma) or ``"disc"``
        (magnitude is the radius).
    """

    kind: str
    magnitude: float
    camera: Role | None = None
    stills: tuple[int, ...] | Literal["all"] | None = ALL
    frames: tuple[int, int] | Literal["all"] | None = ALL
    hz: float | None = None
    phase_deg: float | None = None
    angle_deg: float | None = None
    shape: Literal["gaussian", "disc"] | None = None

    def __post_init__(self) -> None:
        try:
            where = f"defect {self.text()!r}"
        except (KeyError, TypeError, ValueError):  # not even printable: say so below
            where = "defect"
        info = DEFECT_KINDS.get(self.kind)
        if info is None:
            raise DefectError(
                f"unknown defect kind {self.kind!r}; known: {', '.join(DEFECT_KINDS)}"
            )
        m = self.magnitude
        if isinstance(m, bool) or not isinstance(m, int | float) or not math.isfinite(m):
            raise DefectError(f"{where}: magnitude must be a finite number, got {m!r}")
        object.__setattr__(self, "magnitude", float(m))
        if m < 0:
            raise DefectError(
                f"{where}: magnitude {m:g} is negative; magnitudes are >= 0 (choose the "
                "camera for the direction: the other camera's defect acts the other way)"
            )
        if m > info.largest or (info.below_largest and m >= info.largest):
            bound = "below" if info.below_largest else "at most"
            raise DefectError(
                f"{where}: magnitude {m:g} {info.unit} is too large ({info.name} takes "
                f"{bound} {info.largest:g} {info.unit})"
            )
        if self.camera is not None and self.camera not in ROLES:
            raise DefectError(f"{where}: camera must be reference or test, got {self.camera!r}")
        if info.scope == "scene" and self.camera is not None:
            raise DefectError(
                f"{where}: {info.name} is in the scene (both cameras see it); it takes no camera"
            )
        if self.stills is None and self.frames is None:
            raise DefectError(f"{where}: hits no still pair and no frame")
        if isinstance(self.stills, tuple):
            if not self.stills or any(
                isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in self.stills
            ):
                raise DefectError(
                    f"{where}: still pairs are numbered from 1, got {list(self.stills)}"
                )
            object.__setattr__(self, "stills", tuple(sorted(set(self.stills))))
        elif self.stills not in (ALL, None):
            raise DefectError(f"{where}: stills must be numbers, 'all' or None")
        if isinstance(self.frames, tuple):
            if (
                len(self.frames) != 2
                or any(isinstance(f, bool) or not isinstance(f, int) for f in self.frames)
                or not 0 <= self.frames[0] <= self.frames[1]
            ):
                raise DefectError(
                    f"{where}: frames must be (first, last) with 0 <= first <= last, got "
                    f"{self.frames!r}"
                )
        elif self.frames not in (ALL, None):
            raise DefectError(f"{where}: frames must be (first, last), 'all' or None")
        self._check_params(info, where)

    def _check_params(self, info: DefectKind, where: str) -> None:
        given = {
            "hz": self.hz is not None, "phase": self.phase_deg is not None,
            "angle": self.angle_deg is not None, "shape": self.shape is not None,
        }  # fmt: skip
        wrong = [name for name, present in given.items() if present and name not in info.params]
        if wrong:
            takes = ", ".join(info.params) if info.params else "no parameter"
            raise DefectError(f"{where}: {info.name} takes {takes}, not {', '.join(wrong)}")
        for name in ("hz", "phase_deg", "angle_deg"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value)
            ):  # fmt: skip
                raise DefectError(f"{where}: {name} must be a finite number, got {value!r}")
        if self.hz is not None and not 0 < self.hz <= MAX_HZ:
            raise DefectError(f"{where}: hz must be in (0, {MAX_HZ:g}] Hz, got {self.hz:g}")
        if self.shape is not None and self.shape not in ("gaussian", "disc"):
            raise DefectError(f"{where}: shape must be gaussian or disc, got {self.shape!r}")

    @property
    def info(self) -> DefectKind:
        return DEFECT_KINDS[self.kind]

    @property
    def role(self) -> Role | None:
        """The camera that records the defect (``None``: the scene, both cameras)."""
        if DEFECT_KINDS[self.kind].scope == "scene":
            return None
        return self.camera or "test"

    def text(self) -> str:
        """The canonical ``--defect`` text of this defect (:func:`parse_defect` inverse)."""
        terms: list[str] = []
        if self.camera is not None:
            terms.append(self.camera)
        if not (self.stills == ALL and self.frames == ALL):
            if self.stills == ALL:
                terms.append("stills")
            elif isinstance(self.stills, tuple):
                terms += [f"still={a}" if a == b else f"still={a}-{b}"
                          for a, b in _runs(self.stills)]  # fmt: skip
            if self.frames == ALL:
                terms.append("video")
            elif isinstance(self.frames, tuple):
                terms.append(f"frames={self.frames[0]}-{self.frames[1]}")
        for key, value in (("hz", self.hz), ("phase", self.phase_deg), ("angle", self.angle_deg)):
            if value is not None:
                terms.append(f"{key}={_short(value)}")
        if self.shape is not None:
            terms.append(f"shape={self.shape}")
        head = f"{self.kind}:{_short(self.magnitude)}"
        return head + ("@" + ",".join(terms) if terms else "")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("stills", "frames"):
            if isinstance(data[key], tuple):
                data[key] = list(data[key])
        return data


def _short(value: float) -> str:
    """``value`` as short as it reads back exactly (``0.3``, ``2``, ``0.0198347...``)."""
    text = f"{value:g}"
    return text if float(text) == value else repr(float(value))


def _runs(numbers: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs ``(first, last)`` of sorted ``numbers``."""
    runs: list[tuple[int, int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


_PLACE_HELP = (
    "test, reference, stills, still=N[-M], video, frames=A-B, hz=F, phase=DEG, angle=DEG, "
    "shape=gaussian|disc"
)


def parse_defect(text: str) -> DefectSpec:
    """A :class:`DefectSpec` from ``KIND:MAGNITUDE[@TERM[,TERM...]]`` (module docstring).

    Raises
    ------
    DefectError
        Malformed text, an unknown kind or term, a negative or non-finite magnitude, a
        parameter the kind does not take (the message quotes the text).
    """
    spec = text.strip()
    head, at, tail = spec.partition("@")
    kind, colon, magnitude_text = head.partition(":")
    kind = kind.strip().lower()
    if not colon or not magnitude_text.strip():
        raise DefectError(
            f"--defect {text!r} is not KIND:MAGNITUDE[@WHERE] (kinds: {', '.join(DEFECT_KINDS)})"
        )
    if kind not in DEFECT_KINDS:
        raise DefectError(
            f"--defect {text!r}: unknown defect kind {kind!r}; known: {', '.join(DEFECT_KINDS)}"
        )
    magnitude = _number(magnitude_text.strip(), "magnitude", text)
    values: dict[str, Any] = {}
    stills: list[int] = []
    all_stills = video = False
    frames: tuple[int, int] | None = None
    for raw in tail.split(",") if at else []:
        term = raw.strip()
        key, eq, value = (part.strip() for part in term.partition("="))
        key = key.lower()
        if not term:
            raise DefectError(f"--defect {text!r}: empty term after '@' (terms: {_PLACE_HELP})")
        if not eq and key in ("test", "reference", "ref"):
            if "camera" in values:
                raise DefectError(f"--defect {text!r}: names a camera twice")
            values["camera"] = "reference" if key == "ref" else key
        elif not eq and key == "stills":
            all_stills = True
        elif not eq and key == "video":
            video = True
        elif eq and key == "still":
            lo, hi = _range(value, "still", text)
            stills.extend(range(lo, hi + 1))
        elif eq and key == "frames":
            if frames is not None:
                raise DefectError(f"--defect {text!r}: give one frames=A-B range")
            frames = _range(value, "frames", text)
        elif eq and key in ("hz", "phase", "angle"):
            name = {"hz": "hz", "phase": "phase_deg", "angle": "angle_deg"}[key]
            values[name] = _number(value, key, text)
        elif eq and key == "shape":
            values["shape"] = value.lower()
        else:
            raise DefectError(f"--defect {text!r}: unknown term {term!r} (terms: {_PLACE_HELP})")
    placed = all_stills or video or bool(stills) or frames is not None
    stills_value: tuple[int, ...] | Literal["all"] | None = (
        ALL if all_stills or not placed else (tuple(stills) if stills else None)
    )
    frames_value: tuple[int, int] | Literal["all"] | None = ALL if video or not placed else frames
    if all_stills and stills:
        raise DefectError(f"--defect {text!r}: 'stills' already means every still pair")
    if video and frames is not None:
        raise DefectError(f"--defect {text!r}: 'video' already means every frame")
    try:
        return DefectSpec(kind, magnitude, stills=stills_value, frames=frames_value, **values)
    except DefectError as exc:
        raise DefectError(f"--defect {text!r}: {str(exc).split(': ', 1)[-1]}") from None


def as_specs(defects: Iterable[DefectSpec | str]) -> tuple[DefectSpec, ...]:
    """``defects`` as specs (``--defect`` texts parsed); anything else is refused."""
    if isinstance(defects, str | DefectSpec):  # one defect, not a sequence of them
        defects = (defects,)
    out: list[DefectSpec] = []
    for item in defects:
        if isinstance(item, str):
            out.append(parse_defect(item))
        elif isinstance(item, DefectSpec):
            out.append(item)
        else:
            raise DefectError(
                f"defects: expected DefectSpec or --defect text, got {type(item).__name__}"
            )
    return tuple(out)


# --------------------------------------------------------------------------- truth record


@dataclass(frozen=True)
class DefectRecord:
    """One injected defect as ``truth.json["defects"]`` records it.

    Attributes
    ----------
    id
        Position among the session's defects (0-based, the order of ``--defect``).
    spec
        The canonical ``--defect`` text.
    kind
        The defect kind (:data:`DEFECT_KINDS`).
    magnitude
        Its magnitude, in ``unit``.
    unit
        ``px``, ``fraction``, ``EV``, ``s``, ``EV/s`` or ``px/s``.
    camera
        The camera that recorded it (``reference`` or ``test``); ``null``: the scene, seen
        by both cameras.
    control
        A negative control (no QA flag should be raised by it).
    model
        What the affected camera recorded, in words (the parameters are in ``params``).
    stills
        1-based numbers of the still pairs hit, in shooting order.
    still_shots
        The session's shot index of each of ``stills`` (the ``NNNN`` of
        ``truth.json["files"]["still_NNNN_<role>"]``).
    frames
        Per camera role, the first and last movie frame hit (0-based, inclusive, frames
        of that camera's movie); a role absent: none of its frames.
    files
        Session paths of every file the defect is in (the affected cameras' stills, the
        movies of ``frames``).
    params
        The resolved parameters: ``hz``, ``phase_deg`` (flickers), ``angle_deg`` and
        ``shift_px`` (``[dx, dy]``, misregistration), ``shape`` (defocus), ``tau0_s``
        (light_ramp, motion), ``radius_px``, ``x0_px``, ``y_px`` (motion); for clipping
        what the sensor recorded: ``clipped_fraction`` (per still pair of ``stills``, the
        share of that camera's pixels with a channel at white) and
        ``clipped_fraction_frames`` (the same, averaged over its movie frames).
    """

    id: int
    spec: str
    kind: str
    magnitude: float
    unit: str
    camera: Role | None
    control: bool
    model: str
    stills: tuple[int, ...]
    still_shots: tuple[int, ...]
    frames: dict[str, tuple[int, int]]
    files: tuple[str, ...]
    params: dict[str, Any]


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Shot:
    """One exposure of a session: still pair ``number`` (1-based) or movie frame ``number``
    (0-based, of the recording camera)."""

    kind: Literal["still", "frame"]
    number: int


class _BodyLike(Protocol):
    """What :meth:`DefectPlan.apply` needs of a simulated body (a frozen dataclass)."""

    @property
    def gain(self) -> float: ...

    @property
    def view(self) -> npt.NDArray[np.float64]: ...

    def scene_time(self, t: Any) -> Any: ...


B = TypeVar("B", bound=_BodyLike)


@dataclass(frozen=True)
class Injection:
    """A :class:`DefectSpec` resolved against one session (numbers, ranges, drawn values)."""

    id: int
    spec: DefectSpec
    stills: tuple[int, ...]
    frames: dict[str, tuple[int, int]]
    params: dict[str, Any]
    patch: Image | None = field(default=None, repr=False)  # the motion object's texture

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def magnitude(self) -> float:
        return self.spec.magnitude

    def touches(self, role: str, shot: Shot) -> bool:
        """Whether this defect is in ``role``'s exposure ``shot``."""
        camera = self.spec.role
        if camera is not None and camera != role:
            return False
        if shot.kind == "still":
            return shot.number in self.stills
        span = self.frames.get(role)
        return span is not None and span[0] <= shot.number <= span[1]

    def record(self, files: Mapping[str, str], still_shots: Sequence[int]) -> DefectRecord:
        """The truth record; ``files`` is ``truth.json["files"]``, ``still_shots[n - 1]`` the
        shot index of still pair ``n``."""
        roles = [self.spec.role] if self.spec.role else list(ROLES)
        shots = tuple(still_shots[n - 1] for n in self.stills)
        paths = [files[f"still_{s:04d}_{r}"] for s in shots for r in roles
                 if f"still_{s:04d}_{r}" in files]  # fmt: skip
        paths += [files[f"video_{r}"] for r in ROLES if r in self.frames and f"video_{r}" in files]
        info = self.spec.info
        return DefectRecord(
            id=self.id, spec=self.spec.text(), kind=self.kind, magnitude=self.magnitude,
            unit=info.unit, camera=self.spec.role, control=info.control, model=info.model,
            stills=self.stills, still_shots=shots, frames=dict(self.frames),
            files=tuple(paths), params=dict(self.params),
        )  # fmt: skip


def _translation(dx: float, dy: float) -> npt.NDArray[np.float64]:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def blur(scene: Image, size: float, shape: str) -> Image:
    """``scene`` (``(H, W, 3)`` linear float32) blurred by a Gaussian of sigma ``size`` px or
    a uniform disc of radius ``size`` px (edges reflected); ``size`` 0 returns it as is."""
    import cv2

    if size <= 0:
        return scene
    if shape == "disc":
        r = math.ceil(size)
        ys, xs = np.mgrid[-r : r + 1, -r : r + 1]
        kernel = (xs * xs + ys * ys <= size * size + 1e-9).astype(np.float32)
        kernel /= kernel.sum()
        out = cv2.filter2D(scene, -1, kernel, borderType=cv2.BORDER_REFLECT)
    else:
        out = cv2.GaussianBlur(scene, (0, 0), size, borderType=cv2.BORDER_REFLECT)
    return np.asarray(out, np.float32)


def _triangle(x: float, length: float) -> float:
    """``x`` folded into ``[0, length]`` (a ball bouncing between two walls)."""
    if length <= 0:
        return 0.0
    period = 2.0 * length
    x = x % period
    return x if x <= length else period - x


def _draw_object(scene: Image, injection: Injection, tau: float) -> Image:
    """The ``motion`` control's textured disc drawn into ``scene`` at scene time ``tau``."""
    import cv2

    assert injection.patch is not None
    p = injection.params
    height, width = scene.shape[:2]
    radius = float(p["radius_px"])
    travel = injection.magnitude * (tau - float(p["tau0_s"]))
    x = radius + _triangle(float(p["x0_px"]) - radius + travel, width - 2 * radius)
    y = float(p["y_px"])
    x0, x1 = max(0, math.floor(x - radius)), min(width, math.ceil(x + radius) + 1)
    y0, y1 = max(0, math.floor(y - radius)), min(height, math.ceil(y + radius) + 1)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    inside = (xs - x) ** 2 + (ys - y) ** 2 <= radius * radius
    side = injection.patch.shape[0]
    # The texture moves with the disc: sample it in the disc's own coordinates.
    map_x = ((xs - x) / (2 * radius) + 0.5) * (side - 1)
    map_y = ((ys - y) / (2 * radius) + 0.5) * (side - 1)
    texture = cv2.remap(injection.patch, map_x, map_y, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REFLECT)  # fmt: skip
    out = scene.copy()
    region = out[y0:y1, x0:x1]
    region[inside] = texture[inside]
    return out


@dataclass(frozen=True)
class DefectPlan:
    """The defects of one simulated session, resolved: which shots each is in, and the
    physics of a shot (:meth:`apply`). Empty for a clean session (and the fake backend)."""

    injections: tuple[Injection, ...] = ()
    #: What the sensors made of the clipping defects (:meth:`observe`): id -> shot kind ->
    #: share of pixels at white, one per observed shot.
    observed: dict[int, dict[str, list[float]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __bool__(self) -> bool:
        return bool(self.injections)

    @classmethod
    def create(
        cls,
        specs: Sequence[DefectSpec],
        seed: int,
        bodies: Mapping[str, _BodyLike],
        still_times: Sequence[float],
        frame_count: int,
        fps: float,
        canvas: tuple[int, int],
    ) -> DefectPlan:
        """Resolve ``specs`` against a session: ``still_times`` (scene time of each still
        pair), ``frame_count`` frames per movie at ``fps`` (0: no movie), ``canvas`` the
        scene's size. Drawn values (directions, phases, the motion object) come from
        ``seed`` through their own generator, so the rest of the simulation is unchanged.

        Raises
        ------
        DefectError
            A still pair or frame the session does not have, or a defect that hits nothing.
        """
        injections = []
        for index, spec in enumerate(specs):
            rng = np.random.default_rng([seed, 41, index])
            where = f"--defect {spec.text()!r}"
            stills = _resolve_stills(spec, len(still_times), where)
            frames = _resolve_frames(spec, bodies, frame_count, fps, where)
            if not stills and not frames:
                raise DefectError(f"{where}: hits no shot of this session (no still pair or "
                                  "frame where it was asked)")  # fmt: skip
            params, patch = _draw_params(spec, rng, bodies, stills, still_times, frames, fps,
                                         canvas)  # fmt: skip
            injections.append(Injection(index, spec, stills, frames, params, patch))
        return cls(tuple(injections))

    def records(self, files: Mapping[str, str]) -> tuple[DefectRecord, ...]:
        """``truth.json["defects"]`` for a session holding ``files`` (a clipping defect's
        ``params`` with what :meth:`observe` saw: ``clipped_fraction``, one per still pair of
        ``stills``, and ``clipped_fraction_frames``, the mean over its frames)."""
        still_shots = sorted({int(key.split("_")[1]) for key in files if key.startswith("still_")})
        records = []
        for injection in self.injections:
            record = injection.record(files, still_shots)
            seen = self.observed.get(injection.id, {})
            if seen:
                params = dict(record.params)
                if seen.get("still"):
                    params["clipped_fraction"] = [round(v, 6) for v in seen["still"]]
                if seen.get("frame"):
                    params["clipped_fraction_frames"] = round(float(np.mean(seen["frame"])), 6)
                record = dataclasses.replace(record, params=params)
            records.append(record)
        return tuple(records)

    def observe(self, role: str, shot: Shot, image: Image) -> None:
        """Note what ``role``'s sensor recorded for ``shot`` (linear ``(H, W, 3)`` in
        ``[0, 1]``): for each clipping defect in it, the share of pixels with a channel at
        white, the fact its clipping flag should see."""
        for injection in self.injections:
            if injection.kind == "clipping" and injection.touches(role, shot):
                share = float(np.mean(np.max(image, axis=2) >= 1.0))
                self.observed.setdefault(injection.id, {}).setdefault(shot.kind, []).append(share)

    def apply(
        self,
        role: str,
        shot: Shot,
        scene_t: float,
        camera_t: float,
        frame_at: Callable[[float], Image],
        body: B,
    ) -> tuple[Image, B]:
        """The scene canvas ``role``'s body records for ``shot`` and the body to record it
        with (its exposure gain and view changed), every defect in that exposure applied.

        Parameters
        ----------
        scene_t
            The scene time the body would record without defects (s).
        camera_t
            The body's own time of the shot (s; a movie frame ``k`` at ``k / fps``).
        frame_at
            The scene: linear RGB ``(H, W, 3)`` float32 canvas at a scene time.
        body
            The body as configured (a :class:`~expokit.capture.simulator.physics.Body`).
        """
        active = [i for i in self.injections if i.touches(role, shot)]
        if not active:
            return frame_at(scene_t), body
        tau = scene_t + sum(i.magnitude for i in active if i.kind == "time_offset")
        scene = frame_at(tau)
        for injection in active:  # content first, then the optics that blur it
            if injection.kind == "motion":
                scene = _draw_object(scene, injection, tau)
        factor = 1.0
        view = body.view
        for injection in active:
            m, p = injection.magnitude, injection.params
            kind = injection.kind
            if kind == "defocus":
                scene = blur(scene, m, str(p["shape"]))
            elif kind == "misregistration":
                dx, dy = p["shift_px"]
                view = view @ _translation(-dx, -dy)
            elif kind == "light_change":
                factor *= 1.0 + m
            elif kind in ("gain", "clipping"):
                factor *= 2.0**m
            elif kind == "flicker":
                factor *= flicker_factor(m, float(p["hz"]), float(p["phase_deg"]), camera_t)
            elif kind == "scene_flicker":
                factor *= flicker_factor(m, float(p["hz"]), float(p["phase_deg"]), tau)
            elif kind == "light_ramp":
                factor *= 2.0 ** (m * (tau - float(p["tau0_s"])))
        changed = dataclasses.replace(body, gain=body.gain * factor, view=view)  # type: ignore[type-var]
        return scene, changed


def flicker_factor(amplitude: float, hz: float, phase_deg: float, t: float) -> float:
    """``1 + amplitude * sin(2 pi hz t + phase)``: the light or exposure factor of a flicker
    at time ``t`` (s)."""
    return 1.0 + amplitude * math.sin(2.0 * math.pi * hz * t + math.radians(phase_deg))


def _resolve_stills(spec: DefectSpec, count: int, where: str) -> tuple[int, ...]:
    if spec.stills is None:
        return ()
    if spec.stills == ALL:
        return tuple(range(1, count + 1))
    beyond = [n for n in spec.stills if n > count]
    if beyond:
        raise DefectError(
            f"{where}: still pair {beyond[0]} asked, the session has {count} still pair(s) "
            "(--still-pairs)"
        )
    return tuple(spec.stills)


def _resolve_frames(
    spec: DefectSpec, bodies: Mapping[str, _BodyLike], count: int, fps: float, where: str
) -> dict[str, tuple[int, int]]:
    if spec.frames is None or (spec.frames == ALL and count == 0):
        return {}
    if count == 0:
        raise DefectError(f"{where}: frames asked, but the session has no movie (a still source)")
    if spec.frames == ALL:
        first, last = 0, count - 1
    else:
        first, last = spec.frames
        if last >= count:
            raise DefectError(
                f"{where}: frame {last} asked, the movies have {count} frames (0-{count - 1})"
            )
    role = spec.role
    if role is not None:
        return {role: (first, last)}
    if spec.frames == ALL:
        return {r: (0, count - 1) for r in ROLES}
    # A scene defect over reference frames: the scene-time span those frames show (half a
    # frame either side), and the test frames whose scene time falls inside it.
    reference, test = bodies["reference"], bodies["test"]
    lo = float(reference.scene_time(first / fps)) - 0.5 / fps
    hi = float(reference.scene_time(last / fps)) + 0.5 / fps
    times = np.asarray(test.scene_time(np.arange(count) / fps), np.float64)
    inside = np.flatnonzero((times >= lo) & (times < hi))
    frames = {"reference": (first, last)}
    if inside.size:
        frames["test"] = (int(inside[0]), int(inside[-1]))
    return frames


def _draw_params(
    spec: DefectSpec,
    rng: np.random.Generator,
    bodies: Mapping[str, _BodyLike],
    stills: tuple[int, ...],
    still_times: Sequence[float],
    frames: Mapping[str, tuple[int, int]],
    fps: float,
    canvas: tuple[int, int],
) -> tuple[dict[str, Any], Image | None]:
    """The resolved parameters of one defect (and the motion object's texture)."""
    import cv2

    kind = spec.kind
    params: dict[str, Any] = {}
    patch: Image | None = None
    if kind == "misregistration":
        angle = spec.angle_deg if spec.angle_deg is not None else float(rng.uniform(0, 360))
        theta = math.radians(angle)
        params["angle_deg"] = angle
        params["shift_px"] = [spec.magnitude * math.cos(theta), spec.magnitude * math.sin(theta)]
    elif kind in ("flicker", "scene_flicker"):
        params["hz"] = spec.hz if spec.hz is not None else DEFAULT_HZ[kind]
        params["phase_deg"] = (
            spec.phase_deg if spec.phase_deg is not None else float(rng.uniform(0, 360))
        )
    elif kind == "defocus":
        params["shape"] = spec.shape or "gaussian"
    elif kind in ("light_ramp", "motion"):
        params["tau0_s"] = _span_centre(bodies, stills, still_times, frames, fps)
    if kind == "motion":
        width, height = canvas
        radius = MOTION_RADIUS * min(width, height)
        params["radius_px"] = radius
        params["x0_px"] = float(rng.uniform(radius, width - radius))
        params["y_px"] = float(rng.uniform(0.35, 0.65) * height)
        noise = rng.normal(0, 1, (64, 64, 3)).astype(np.float32)
        noise = np.asarray(cv2.GaussianBlur(noise, (0, 0), 2.0), np.float32)
        base = rng.uniform(0.3, 0.6, 3).astype(np.float32)
        patch = np.clip(base + 0.15 * noise / max(float(noise.std()), 1e-6), 0.02, 0.95)
        patch = patch.astype(np.float32)
    return params, patch


def _span_centre(
    bodies: Mapping[str, _BodyLike],
    stills: tuple[int, ...],
    still_times: Sequence[float],
    frames: Mapping[str, tuple[int, int]],
    fps: float,
) -> float:
    """Middle scene time of what a scene defect covers (its reference frames, else its
    still pairs): the ramp is 1 there and the moving object at its ``x0_px``."""
    span = frames.get("reference")
    if span is not None and fps > 0:
        reference = bodies["reference"]
        lo = float(reference.scene_time(span[0] / fps))
        hi = float(reference.scene_time(span[1] / fps))
        return round(0.5 * (lo + hi), 9)
    times = [still_times[n - 1] for n in stills]
    return round(0.5 * (min(times) + max(times)), 9) if times else 0.0
