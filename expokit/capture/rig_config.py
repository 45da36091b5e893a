"""The rig configuration: a TOML file loaded into typed dataclasses that own defaults and checks.

Example (``expokit capture`` reads it with ``--rig rig.toml``)::

    backend = "gphoto2"                 # or "fake"
    output_root = "sessions"
    ev_offset = -2.0                    # test exposure relative to reference, in EV
    bracket = [-2, -1, 0, 1, 2]         # EV ladder for `expokit capture bracket`
    bracket_roles = ["test"]            # roles that bracket ("reference", "test" or both)
    trigger_mode = "threaded"           # threaded (barrier) | sequential
    filename_template = "{session}_{index:04d}_{role}_{ev_token}{ext}"

    [retry]
    attempts = 4
    backoff_s = 0.2

    [roles.reference]
    serial = "3012345"
    settings = { shutter = "1/125", aperture = "8", iso = "100", image_format = "RAW" }

    [roles.test]
    serial = "3054321"
    settings = { aperture = "8", iso = "100", image_format = "RAW" }  # shutter from ev_offset

A ``fake`` rig may serve simulated footage (:mod:`expokit.capture.simulator`): ``capture
video`` then returns the simulated movies of both bodies, ``capture pair`` stills of the
scene and ``capture calibration`` stills of a ChArUco board, and each session gets a
``truth.json``. The test camera's EV offset is the rig's ``ev_offset``::

    [fake]
    source = "generated"                # or a movie, a folder of frames, an image
    cameras = [{ serial = "3012345" }, { serial = "3054321" }]

    [fake.simulation]                   # any field of SimulationConfig (defaults there)
    offset_s = 0.37                     # sync.json convention
    drift_ppm = 120.0
    seed = 0
    size = [320, 240]

Live view (``expokit align live``) of a fake rig shows a still world; ``[fake.live_depth]``
(``near_m``, ``far_m``, ...: :class:`~expokit.capture.backends.fake.LiveDepth`) puts the
rig's ChArUco board near it, in front of the scene, so a body's ``misalignment`` table
(``[[fake.cameras]] misalignment = { pupil_offset_mm = [5, 0, 20] }``) shows as parallax.

Roles are bound to **serial numbers**: USB ports change on re-plug and two identical bodies
swap. Setting names are generic (see :mod:`expokit.capture.aliases`) or the camera's own.
"""

from __future__ import annotations

import dataclasses
import math
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expokit.capture.aliases import GENERIC_SETTINGS
from expokit.capture.backends.fake import FakeCameraSpec, LiveDepth
from expokit.capture.exposure import f_number, iso_value, shutter_seconds
from expokit.capture.factory import BACKENDS
from expokit.capture.simulator import SIMULATION_KEYS, SensorModel, SimulationConfig
from expokit.core import toml as tomllib
from expokit.core.errors import ExpokitError
from expokit.core.ev import ev_token
from expokit.core.paths import is_safe_name

ROLES: tuple[str, ...] = ("reference", "test")
TRIGGER_MODES: tuple[str, ...] = ("threaded", "sequential")
TEMPLATE_FIELDS = {"session", "index", "role", "ev_token", "ext", "kind", "serial"}
REQUIRED_TEMPLATE_FIELDS = {"index", "role", "ev_token", "ext"}
#: Most attempts a retry policy may make per camera action (more only prolongs a failure).
MAX_ATTEMPTS = 100
#: Longest pause between two attempts, in seconds (the exponential backoff stops growing).
MAX_PAUSE_S = 600.0
#: Largest width or precision in a template's format spec (a name is at most 128 characters).
MAX_TEMPLATE_WIDTH = 128
#: A session folder name as :meth:`expokit.capture.session.Session.create` makes one, for
#: checking the template's result at config load.
SAMPLE_SESSION = "20240131-235959-session-name"
#: Python's standard format spec (``[[fill]align][sign][z][#][0][width][,_][.precision][type]``).
_FORMAT_SPEC = re.compile(
    r"(?:(?P<fill>.)?[<>=^])?[+\- ]?z?#?0?(?P<width>\d+)?[_,]?(?:\.(?P<precision>\d+))?"
    r"[bcdeEfFgGnosxX%]?",
    re.DOTALL,
)


class RigConfigError(ExpokitError):
    """The rig configuration is invalid; the message names the file and the key."""


def check_filename_template(template: str, samples: list[dict[str, Any]]) -> None:
    """Check that ``template`` can only ever produce one safe file name inside ``files/``.

    Only the named fields of :data:`TEMPLATE_FIELDS` with plain format specs are allowed:
    no attribute or index access (``{index.__class__}``, ``{role[0]}``), no conversions
    (``{role!r}``), no nested fields in specs, no ``/``, ``\\`` or ``..`` in the literal
    text. The template is then rendered with every sample and each result must be a safe
    name (:func:`expokit.core.paths.is_safe_name`), so a bad spec such as ``{index:zz}``
    fails here, before a session folder exists.

    Raises
    ------
    ValueError
        Naming the template and the problem.
    """
    where = f"filename_template {template!r}"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{where} is not a valid format string: {exc}") from None
    fields: set[str] = set()
    for literal, name, spec, conversion in parsed:
        if any(bad in literal for bad in ("/", "\\", "..")):
            raise ValueError(
                f"{where}: its text may not contain '/', '\\' or '..' "
                "(files stay directly inside the session's files/ folder)"
            )
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            detail = (
                "attribute and index access are not allowed"
                if name.split(".")[0].split("[")[0] in TEMPLATE_FIELDS
                else f"available: {sorted(TEMPLATE_FIELDS)}"
            )
            raise ValueError(f"{where} has unknown fields: {{{name}}}; {detail}")
        if conversion is not None:
            raise ValueError(
                f"{where}: conversions such as {{{name}!{conversion}}} are not allowed"
            )
        if spec and ("{" in spec or "}" in spec):
            raise ValueError(f"{where}: nested fields in the spec of {{{name}}} are not allowed")
        match = _FORMAT_SPEC.fullmatch(spec or "")
        if match is None:
            raise ValueError(f"{where}: {{{name}:{spec}}} is not a valid format spec")
        if match["fill"] in ("/", "\\", "."):
            raise ValueError(
                f"{where}: {{{name}:{spec}}} pads with {match['fill']!r} "
                "(padding with '/', '\\' or '.' could make a path)"
            )
        if any(int(match[part] or 0) > MAX_TEMPLATE_WIDTH for part in ("width", "precision")):
            raise ValueError(
                f"{where}: {{{name}:{spec}}} is wider than a file name may be "
                f"({MAX_TEMPLATE_WIDTH} characters)"
            )
        fields.add(name)
    if REQUIRED_TEMPLATE_FIELDS - fields:
        raise ValueError(
            f"filename_template must contain {sorted(REQUIRED_TEMPLATE_FIELDS - fields)} "
            "(names must carry role, index and EV, and keep the camera's extension)"
        )
    for values in samples:
        try:
            name = template.format(**values)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{where} cannot be rendered: {exc}") from None
        if not is_safe_name(name):
            raise ValueError(
                f"{where} makes {name!r}, which is not a single safe file name "
                "(letters, digits, '.', '_' and '-', starting with a letter or digit, "
                "at most 128 characters)"
            )


@dataclass(frozen=True)
class RetryPolicy:
    """Budgets for retries and deadlines (seconds)."""

    attempts: int = 4
    backoff_s: float = 0.2
    backoff_factor: float = 2.0
    trigger_timeout_s: float = 15.0
    reconnect_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ValueError(f"retry.attempts = {self.attempts!r} must be an integer")
        if not 1 <= self.attempts <= MAX_ATTEMPTS:
            raise ValueError(f"retry.attempts = {self.attempts} must be within 1..{MAX_ATTEMPTS}")
        for name in ("backoff_s", "backoff_factor", "trigger_timeout_s", "reconnect_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"retry.{name} = {value!r} must be a number")
        for name in ("backoff_s", "trigger_timeout_s", "reconnect_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"retry.{name} must be a non-negative number, got {value}")
        if not (math.isfinite(self.backoff_factor) and self.backoff_factor >= 1):
            raise ValueError("retry.backoff_factor must be a finite number >= 1")

    def delays(self) -> list[float]:
        """Pauses before attempts 2..N: ``backoff_s * backoff_factor**i``, each at most
        :data:`MAX_PAUSE_S` seconds."""
        pauses, pause = [], float(self.backoff_s)
        for _ in range(self.attempts - 1):
            pauses.append(min(pause, MAX_PAUSE_S))
            pause = min(pause * self.backoff_factor, MAX_PAUSE_S)
        return pauses


@dataclass(frozen=True)
class RoleConfig:
    """A role bound to one body by serial number, with its settings (generic names)."""

    serial: str
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not str(self.serial).strip():
            raise ValueError("serial must not be empty")
        object.__setattr__(self, "serial", str(self.serial))
        object.__setattr__(self, "settings", {k: str(v) for k, v in self.settings.items()})
        checks = {"shutter": shutter_seconds, "aperture": f_number, "iso": iso_value}
        for key, check in checks.items():
            if key in self.settings and self.settings[key].lower() != "auto":
                check(self.settings[key])


@dataclass(frozen=True)
class RigConfig:
    """Everything about a two-camera rig and how to shoot with it."""

    roles: dict[str, RoleConfig]
    backend: str = "gphoto2"
    output_root: Path = Path("sessions")
    ev_offset: float = 0.0
    bracket: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    bracket_roles: tuple[str, ...] = ("test",)
    trigger_mode: str = "threaded"
    filename_template: str = "{session}_{index:04d}_{role}_{ev_token}{ext}"
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    exif_tolerance_ev: float = 0.34
    fake: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def __post_init__(self) -> None:
        missing = [r for r in ROLES if r not in self.roles]
        if missing:
            raise ValueError(
                f"roles missing: {', '.join(missing)} (need [roles.reference] and [roles.test])"
            )
        unknown = [r for r in self.roles if r not in ROLES]
        if unknown:
            raise ValueError(f"unknown roles: {', '.join(unknown)} (roles are {', '.join(ROLES)})")
        if self.roles["reference"].serial == self.roles["test"].serial:
            raise ValueError("reference and test are bound to the same serial number")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.trigger_mode not in TRIGGER_MODES:
            raise ValueError(f"trigger_mode must be one of {', '.join(TRIGGER_MODES)}")
        if not math.isfinite(self.ev_offset) or abs(self.ev_offset) > 10:
            raise ValueError(f"ev_offset must be within +-10 EV, got {self.ev_offset}")
        if not self.bracket or len(set(self.bracket)) != len(self.bracket):
            raise ValueError("bracket must be a non-empty list of distinct EVs")
        if not all(math.isfinite(ev) for ev in self.bracket):
            raise ValueError(f"bracket = {list(self.bracket)} must hold finite EVs")
        check_exif_tolerance(self.exif_tolerance_ev)
        for role in self.bracket_roles:
            if role not in ROLES:
                raise ValueError(f"bracket_roles: unknown role {role!r}")
        check_filename_template(self.filename_template, self._template_samples())
        self._check_fake_cameras()
        self.live_depth()  # checks [fake.live_depth]
        if self.fake.get("source") is not None or self.fake.get("simulation") is not None:
            if self.backend != "fake":
                raise ValueError("fake.source / fake.simulation: only a fake backend simulates")
            self.simulation()  # checks every key of [fake.simulation]
        for role_config in self.roles.values():
            for key in role_config.settings:
                if (
                    key not in GENERIC_SETTINGS
                    and not key.replace("-", "").replace("_", "").isalnum()
                ):
                    raise ValueError(f"setting name {key!r} is not valid")

    def live_depth(self) -> Any:
        """``[fake.live_depth]`` as a :class:`~expokit.capture.backends.fake.LiveDepth` (a
        ChArUco board held near the fake rig, in front of its scene), ``None`` without it.

        Raises
        ------
        ValueError
            Naming ``fake.live_depth`` and the problem.
        """
        table = self.fake.get("live_depth")
        if table is None:
            return None
        if self.backend != "fake":
            raise ValueError("fake.live_depth: only a fake backend has a simulated world")

        if not isinstance(table, dict):
            raise ValueError(f"fake.live_depth = {table!r} must be a table (near_m, far_m)")
        try:
            return LiveDepth(**{k: float(v) for k, v in table.items()})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"fake.live_depth: {exc}") from None

    def _check_fake_cameras(self) -> None:
        """``[fake] cameras``: a list of tables, each a valid fake body (serial, model, ...)."""
        cameras = self.fake.get("cameras")
        if cameras is None:
            return
        if not isinstance(cameras, list) or not all(isinstance(c, dict) for c in cameras):
            raise ValueError(
                f"fake.cameras = {cameras!r} must be a list of tables "
                '([[fake.cameras]] with serial = "...", model = "...")'
            )
        for number, camera in enumerate(cameras, start=1):
            try:
                FakeCameraSpec.from_dict(camera)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"fake.cameras #{number}: {exc}") from None

    def _template_samples(self) -> list[dict[str, Any]]:
        """Plausible field values for rendering the template once per role, kind and EV."""
        evs = {0.0, self.ev_offset, *self.bracket, *(self.ev_offset + b for b in self.bracket)}
        return [
            {
                "session": SAMPLE_SESSION,
                "index": index,
                "role": role,
                "ev_token": ev_token(ev),
                "ext": ext,
                "kind": kind,
                "serial": self.roles[role].serial,
            }
            for role in ROLES
            for kind, ext in (
                ("pair", ".nef"),
                ("bracket", ".cr2"),
                ("video", ".mov"),
                ("calibration", ".png"),
            )
            for index in (1, 99999)
            for ev in sorted(evs)
        ]

    def simulation(self, seconds: float | None = None) -> SimulationConfig | None:
        """The :class:`~expokit.capture.simulator.physics.SimulationConfig` of a fake rig whose
        ``[fake]`` table names a ``source`` (``None`` without one); ``seconds``: the movie
        length (``capture video --seconds``).

        Raises
        ------
        ValueError
            Naming the key (``fake.source``, ``fake.simulation.<key>``) and the problem.
        """
        source = self.fake.get("source")
        table = self.fake.get("simulation")
        if source is None:
            if table is not None:
                raise ValueError("fake.simulation needs fake.source (a movie, ... or 'generated')")
            return None
        return simulation_config(source, table or {}, self.ev_offset, seconds)

    @property
    def serials(self) -> dict[str, str]:
        return {role: cfg.serial for role, cfg in self.roles.items()}

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["output_root"] = str(self.output_root)
        data["source"] = str(self.source) if self.source else None
        data["bracket"] = list(self.bracket)
        data["bracket_roles"] = list(self.bracket_roles)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: Path | None = None) -> RigConfig:
        """A rig from its TOML tables or its ``rig.json``; every key is type-checked first.

        Raises
        ------
        ValueError
            Naming the key (``bracket``, ``roles.test.settings``, ``retry.attempts``, ...)
            and what it must be.
        """
        if not isinstance(data, dict):
            raise ValueError(f"the rig config must be a table of keys, got {type(data).__name__}")
        check_types(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(unknown)}")
        values = dict(data)
        try:
            roles = {name: RoleConfig(**cfg) for name, cfg in values.pop("roles", {}).items()}
        except TypeError as exc:
            raise ValueError(f"roles: {exc}") from None
        if "retry" in values:
            try:
                values["retry"] = RetryPolicy(**values["retry"])
            except TypeError as exc:
                raise ValueError(f"retry: {exc}") from None
        if "output_root" in values:
            root = Path(values["output_root"]).expanduser()
            if source is not None and not root.is_absolute():
                root = source.parent / root
            values["output_root"] = root
        for key in ("bracket", "bracket_roles"):
            if key in values:
                values[key] = tuple(values[key])
        fake = values.get("fake")
        if isinstance(fake, dict) and isinstance(fake.get("source"), str):
            src = fake["source"]
            if src != "generated" and source is not None and not Path(src).is_absolute():
                values["fake"] = {**fake, "source": str(source.parent / Path(src).expanduser())}
        stored_source = values.pop("source", None)
        if source is None and stored_source:
            source = Path(stored_source)
        return cls(roles=roles, source=source, **values)


def check_exif_tolerance(value: object) -> None:
    """Refuse an EXIF tolerance that would switch the EXIF check off or make it meaningless.

    ``error_ev > nan`` and ``error_ev > inf`` are always false, so a NaN or infinite
    tolerance (both valid TOML, and ``NaN``/``Infinity`` are accepted by Python's JSON
    reader) would silently pass every shot; a negative one flags every shot.

    Raises
    ------
    ValueError
        ``exif_tolerance_ev = <value> must be ...``, naming the field.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"exif_tolerance_ev = {value!r} must be a number of EV")
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"exif_tolerance_ev = {value!r} must be a finite number of EV >= 0 "
            "(nan or inf would switch the EXIF check off; e.g. 0.34)"
        )


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: object) -> bool:
    return isinstance(value, str)


def _table(value: object) -> bool:
    return isinstance(value, dict)


#: Type of each top-level key: (check, what it must be).
_KEY_TYPES: dict[str, tuple[Any, str]] = {
    "backend": (_text, 'text ("gphoto2" or "fake")'),
    "output_root": (_text, "a folder path (text)"),
    "ev_offset": (_number, "a number of EV (e.g. -2.0)"),
    "bracket": (
        lambda v: isinstance(v, list) and all(_number(x) for x in v),
        "a list of EVs (e.g. [-2, -1, 0, 1, 2])",
    ),
    "bracket_roles": (
        lambda v: isinstance(v, list) and all(_text(x) for x in v),
        'a list of roles (e.g. ["test"])',
    ),
    "trigger_mode": (_text, 'text ("threaded" or "sequential")'),
    "filename_template": (_text, "text (a format string)"),
    "retry": (_table, "a table ([retry] attempts = ..., backoff_s = ...)"),
    "exif_tolerance_ev": (_number, "a number of EV"),
    "fake": (_table, "a table ([fake] cameras, source, simulation, live_depth)"),
    "roles": (_table, "a table ([roles.reference] and [roles.test])"),
    "source": (lambda v: v is None or _text(v), "a file path (text)"),
}


def check_types(data: dict[str, Any]) -> None:
    """Check the type of every known key of a rig config (top level, ``roles.<role>`` and
    ``retry``), so a wrong type gets an error naming the key instead of a crash later.

    Raises
    ------
    ValueError
        ``<key> = <value> must be <what>``.
    """
    for key, (check, what) in _KEY_TYPES.items():
        if key in data and not check(data[key]):
            raise ValueError(f"{key} = {data[key]!r} must be {what}")
    for role, table in data.get("roles", {}).items():
        where = f"roles.{role}"
        if not isinstance(table, dict):
            raise ValueError(f"{where} = {table!r} must be a table (serial, settings)")
        serial = table.get("serial")
        if "serial" in table and (isinstance(serial, bool) or not isinstance(serial, str | int)):
            raise ValueError(f"{where}.serial = {serial!r} must be text (the body's serial number)")
        settings = table.get("settings", {})
        if not isinstance(settings, dict):
            raise ValueError(
                f'{where}.settings = {settings!r} must be a table (e.g. {{ iso = "100" }})'
            )
        for name, value in settings.items():
            if not (_text(value) or _number(value)):
                raise ValueError(f"{where}.settings.{name} = {value!r} must be text or a number")
    for name, value in data.get("retry", {}).items():
        if name == "attempts" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"retry.attempts = {value!r} must be an integer")
        if not _number(value):
            raise ValueError(f"retry.{name} = {value!r} must be a number")


_INT_KEYS = frozenset({"seed", "scene_seed", "audio_rate", "crf"})


def simulation_config(
    source: Any, table: Any, ev_offset: float, seconds: float | None = None
) -> SimulationConfig:
    """``[fake] source`` and ``[fake.simulation]`` as a ``SimulationConfig``.

    Raises
    ------
    ValueError
        Naming ``fake.source`` or ``fake.simulation.<key>`` and the problem.
    """
    if not isinstance(source, str) or not source.strip():
        raise ValueError(
            f"fake.source = {source!r}: give 'generated' or the path of a movie, a folder "
            "of frames or an image"
        )
    if source != "generated" and not Path(source).exists():
        raise ValueError(f"fake.source = {source!r}: no such file or folder")
    if not isinstance(table, dict):
        raise ValueError("fake.simulation must be a table")
    unknown = sorted(set(table) - set(SIMULATION_KEYS))
    if unknown:
        raise ValueError(
            f"fake.simulation: unknown keys {', '.join(unknown)} "
            f"(known: {', '.join(SIMULATION_KEYS)}; seconds and pairs come from the command)"
        )
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"fake.simulation.{key}"
        if key in ("reference_sensor", "test_sensor"):
            if not isinstance(value, dict):
                raise ValueError(f"{where} must be a table (full_well_e, read_noise_e)")
            try:
                values[key] = SensorModel(**value)
            except TypeError as exc:
                raise ValueError(f"{where}: {exc}") from None
            except ExpokitError as exc:
                raise ValueError(f"{where}: {exc}") from None
        elif key == "size":
            if (
                not isinstance(value, list)
                or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            ):
                raise ValueError(f"{where} = {value!r} must be [width, height] in pixels")
            values[key] = (value[0], value[1])
        elif key == "steady_light":
            if not isinstance(value, bool):
                raise ValueError(f"{where} = {value!r} must be true or false")
            values[key] = value
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where} = {value!r} must be a number")
        elif key in _INT_KEYS and not isinstance(value, int):
            raise ValueError(f"{where} = {value!r} must be an integer")
        else:
            values[key] = value
    if "ev_offset" in values and values["ev_offset"] != ev_offset:
        raise ValueError(
            f"fake.simulation.ev_offset = {values['ev_offset']:g} differs from the rig's "
            f"ev_offset = {ev_offset:g} (the test camera's settings and file names follow "
            "ev_offset); set ev_offset only"
        )
    values["ev_offset"] = ev_offset
    for key in values:  # each key alone first, so the error names the one at fault
        try:
            SimulationConfig(source=source, **{key: values[key]})
        except ExpokitError as exc:
            text = str(exc)
            option = f"{key} (--{key.replace('_', '-')})"
            name = "ev_offset" if key == "ev_offset" else f"fake.simulation.{key}"
            raise ValueError(
                text.replace(option, name) if option in text else f"{name}: {text}"
            ) from None
    try:
        return SimulationConfig(source=source, seconds=seconds, still_pairs=0, **values)
    except ExpokitError as exc:
        raise ValueError(f"fake.simulation: {exc}") from None


def load_rig_config(path: str | Path) -> RigConfig:
    """Load and validate a rig TOML file.

    Raises
    ------
    RigConfigError
        Naming the file and the problem (missing file, TOML syntax, bad key or value).
    """
    file = Path(path)
    try:
        data = tomllib.loads(file.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise RigConfigError(f"{file}: no such rig config file") from None
    except OSError as exc:
        raise RigConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RigConfigError(
            f"{file}: not UTF-8 text (byte {exc.start}: "
            f"{exc.object[exc.start : exc.start + 1]!r}); TOML files must be UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise RigConfigError(f"{file}: not valid TOML: {exc}") from None
    try:
        return RigConfig.from_dict(data, source=file.resolve())
    except ValueError as exc:
        raise RigConfigError(f"{file}: {exc}") from None


def read_rig_json(path: str | Path) -> RigConfig:
    """Load the resolved rig config a session stored (``rig.json``), validated like a TOML.

    Raises
    ------
    RigConfigError
        Naming the file and the problem (unreadable, truncated JSON, not an object, bad key).
    """
    import json

    file = Path(path)
    try:
        data = json.loads(file.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise RigConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RigConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from None
    except ValueError as exc:
        raise RigConfigError(f"{file}: not valid JSON (truncated or damaged?): {exc}") from None
    if not isinstance(data, dict):
        raise RigConfigError(
            f"{file}: must be a JSON object (the resolved rig config), got {type(data).__name__}"
        )
    try:
        return RigConfig.from_dict(data)
    except ValueError as exc:
        raise RigConfigError(f"{file}: {exc}") from None
