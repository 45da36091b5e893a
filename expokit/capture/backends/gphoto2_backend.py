"""python-gphoto2 backend: real camera bodies over USB (PTP) and the wheel's virtual camera.

``gphoto2`` is imported only inside functions, so ``import expokit.capture`` works without the
optional ``capture`` extra; the first call that needs it raises :class:`ExpokitError` with the
install command.

libgphoto2 facts this module is built around (measured with python-gphoto2 2.6.4 /
libgphoto2 2.5.34):

* Calling ``exit()`` and then ``init()`` on the same ``gp.Camera`` object crashed the process
  (virtual camera), so every :meth:`Gphoto2Camera.connect` creates a new ``gp.Camera``.
* The virtual camera (``VCAMERADIR`` set before ``import gphoto2``) is one device per process:
  every ``gp.Camera`` object is the same body, and two threads calling it at once corrupted
  the heap, so all objects share one lock when it is in use.
* The virtual camera answers ``wait_for_event`` with ``GP_EVENT_TIMEOUT`` at once instead of
  after the timeout; :meth:`Gphoto2Camera.wait_for_event` sleeps out the rest so that callers
  polling against a deadline do not spin.
* A radio widget accepts any string in ``set_value`` without complaint, so values are checked
  against the choices here before they reach the camera.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from expokit.capture.aliases import movie_control
from expokit.capture.backends.base import (
    Camera,
    CameraBusy,
    CameraDisconnected,
    CameraError,
    CameraEvent,
    CameraFile,
    CameraInfo,
    CameraIOError,
    CameraNotFound,
    CameraStats,
    NotSupported,
    SettingInfo,
    SettingValueError,
    UsbClaimError,
)
from expokit.core.errors import ExpokitError

__all__ = ["Gphoto2Camera", "list_cameras", "make_camera", "translate_error"]

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKEND = "gphoto2"

INSTALL_HINT = (
    "install it with: pip install 'expokit[capture]' (the python-gphoto2 wheels bundle "
    "libgphoto2 on Linux x86_64/aarch64 and macOS)"
)

#: libgphoto2 error names (looked up on the ``gphoto2`` module, so a constant missing from an
#: old release is simply skipped) -> the kind of failure they mean.
_BUSY_CODES = ("GP_ERROR_CAMERA_BUSY",)
_CLAIM_CODES = ("GP_ERROR_IO_USB_CLAIM",)
_UNSUPPORTED_CODES = (
    "GP_ERROR_NOT_SUPPORTED",
    "GP_ERROR_IO_SUPPORTED_USB",
    "GP_ERROR_IO_SUPPORTED_SERIAL",
)
_IO_CODES = (
    "GP_ERROR_IO",
    "GP_ERROR_IO_INIT",
    "GP_ERROR_IO_READ",
    "GP_ERROR_IO_WRITE",
    "GP_ERROR_IO_UPDATE",
    "GP_ERROR_IO_SERIAL_SPEED",
    "GP_ERROR_IO_USB_CLEAR_HALT",
    "GP_ERROR_IO_LOCK",
    "GP_ERROR_TIMEOUT",
    "GP_ERROR_HAL",
)
#: The device is not (or no longer) on the bus.
_GONE_CODES = ("GP_ERROR_IO_USB_FIND", "GP_ERROR_MODEL_NOT_FOUND", "GP_ERROR_UNKNOWN_PORT")

#: Widget types that carry a value (windows, sections and buttons do not).
_VALUE_WIDGETS = ("RADIO", "MENU", "TEXT", "RANGE", "TOGGLE", "DATE")

_TOGGLE_WORDS = {"1": 1, "0": 0, "on": 1, "off": 0, "true": 1, "false": 0, "yes": 1, "no": 0}

#: Serial-number configuration names, most common first (PTP/Nikon/Sony, then Canon EOS).
_SERIAL_SETTINGS = ("serialnumber", "eosserialnumber")
_SUMMARY_SERIAL = re.compile(r"Serial\s*Number:\s*(\S+)", re.IGNORECASE)

#: Longest single libgphoto2 event wait (see Gphoto2Camera.wait_for_event).
_EVENT_SLICE_S = 0.1

#: Canon EOS bodies serve live view frames only with this toggle set to 1.
_VIEWFINDER_SETTING = "viewfinder"
#: Tries of one live view frame on retryable errors (busy, I/O), and the pause between them.
_PREVIEW_TRIES = 3
_PREVIEW_PAUSE_S = 0.1

#: Clock settings, best first: ``datetimeutc`` is UTC on the body, ``datetime`` local time.
_CLOCK_SETTINGS = ("datetimeutc", "datetime")

#: The virtual camera is one device per process: every gp.Camera object shares this lock.
_VIRTUAL_LOCK = threading.RLock()

#: Ports this process holds open -> what was read from them, so that listing does not try to
#: open a body a second time (a USB claim error on real bodies, the same device on the virtual
#: camera).
_OPEN_PORTS: dict[str, CameraInfo] = {}
_OPEN_PORTS_LOCK = threading.Lock()


def _gp() -> Any:
    """The ``gphoto2`` module, or :class:`ExpokitError` saying how to install it."""
    if sys.platform == "win32":
        raise ExpokitError(
            "the gphoto2 camera backend needs libgphoto2, which does not support Windows; "
            "run capture on Linux or macOS, or use the 'fake' backend"
        )
    try:
        import gphoto2 as gp
    except (ImportError, OSError) as exc:  # OSError: the bundled shared library failed to load
        raise ExpokitError(f"python-gphoto2 is not available ({exc}); {INSTALL_HINT}") from exc
    return gp


def _codes(gp: Any, names: tuple[str, ...]) -> set[int]:
    return {int(getattr(gp, name)) for name in names if hasattr(gp, name)}


def _is_virtual() -> bool:
    """Whether python-gphoto2 uses (or, not yet imported, will use) the virtual camera."""
    if "gphoto2" not in sys.modules:
        return "VCAMERADIR" in os.environ
    # gphoto2/__init__.py points IOLIBS at the "vusb" folder when VCAMERADIR was set at import.
    return Path(os.environ.get("IOLIBS", "")).name == "vusb"


def translate_error(exc: BaseException, context: str, *, connecting: bool = False) -> CameraError:
    """Map a ``gphoto2.GPhoto2Error`` to the backend-neutral error classes.

    Parameters
    ----------
    exc
        The exception from python-gphoto2 (anything with an integer ``code`` attribute).
    context
        What was being done, e.g. ``"Nikon DSC D750 (usb:001,001): capture"``; starts the
        message.
    connecting
        ``True`` while opening the camera: a missing device is then :class:`CameraNotFound`
        rather than :class:`CameraDisconnected`.

    Returns
    -------
    CameraError
        :class:`CameraBusy` (-110), :class:`UsbClaimError` (-53, with its hint),
        :class:`NotSupported` (-6), :class:`CameraIOError` (-7, -10, -31, -34, -35, ...),
        :class:`CameraNotFound` / :class:`CameraDisconnected` (-52, -105, -5; -108 while
        connecting) or a plain :class:`CameraError`; ``code`` is kept on all of them.
    """
    gp = _gp()
    code = getattr(exc, "code", None)
    message = f"{context} failed: {exc}"
    if not isinstance(code, int):
        return CameraError(message)
    if code in _codes(gp, _BUSY_CODES):
        return CameraBusy(f"{message} (camera busy; retry after a pause)", code)
    if code in _codes(gp, _CLAIM_CODES):
        return UsbClaimError(f"{message}: {UsbClaimError.HINT}", code)
    if code in _codes(gp, _UNSUPPORTED_CODES):
        return NotSupported(message, code)
    gone = _codes(gp, _GONE_CODES)
    if connecting:
        # A port that vanished since autodetect fails init with "file not found" (-108).
        gone |= _codes(gp, ("GP_ERROR_FILE_NOT_FOUND",))
    if code in gone:
        if connecting:
            return CameraNotFound(f"{message} (is the camera on and connected?)", code)
        return CameraDisconnected(f"{message} (camera gone; reconnect it)", code)
    if code in _codes(gp, _IO_CODES):
        return CameraIOError(message, code)
    return CameraError(message, code)


def _autodetect(gp: Any) -> list[tuple[str, str]]:
    """``(model, port)`` of every camera on the bus."""
    found = gp.Camera.autodetect()
    # CameraList.__iter__ is deprecated in python-gphoto2 2.6; index it instead.
    return [(str(found.get_name(i)), str(found.get_value(i))) for i in range(len(found))]


def _open(gp: Any, model: str, port: str) -> Any:
    """A new, initialised ``gp.Camera`` on ``port`` (the standard python-gphoto2 recipe)."""
    abilities = gp.CameraAbilitiesList()
    abilities.load()
    ports = gp.PortInfoList()
    ports.load()
    camera = gp.Camera()
    camera.set_abilities(abilities[abilities.lookup_model(model)])
    camera.set_port_info(ports[ports.lookup_path(port)])
    camera.init()
    return camera


def _exit_quietly(gp: Any, camera: Any) -> None:
    try:
        camera.exit()
    except gp.GPhoto2Error as exc:  # a body that was unplugged cannot be closed cleanly
        log.debug("gphoto2 exit failed: %s", exc)


def _usable_serial(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    # Some bodies report an empty or all-zero serial through one of the names.
    if not text or not text.strip("0"):
        return None
    return text


def _read_serial(gp: Any, camera: Any) -> str | None:
    """The body's serial number from its configuration, else its summary text."""
    for name in _SERIAL_SETTINGS:
        try:
            serial = _usable_serial(_get_widget(gp, camera, name)[0].get_value())
        except (gp.GPhoto2Error, KeyError):
            continue
        if serial:
            return serial
    try:
        summary = str(camera.get_summary())
    except gp.GPhoto2Error:
        return None
    match = _SUMMARY_SERIAL.search(summary)
    return _usable_serial(match.group(1)) if match else None


def _probe(gp: Any, model: str, port: str) -> CameraInfo:
    """Open the camera on ``port`` briefly to read its serial number."""
    with _OPEN_PORTS_LOCK:
        held = _OPEN_PORTS.get(port)
    if held is not None:
        return held
    # Only the virtual camera needs serialising here: real bodies on other ports are separate.
    with _VIRTUAL_LOCK if _is_virtual() else contextlib.nullcontext():
        try:
            camera = _open(gp, model, port)
        except gp.GPhoto2Error as exc:
            error = translate_error(exc, f"{model} ({port}): open", connecting=True)
            log.warning("cannot read the serial number of %s on %s: %s", model, port, error)
            return CameraInfo(model, port, f"port:{port}", BACKEND)
        try:
            serial = _read_serial(gp, camera)
        finally:
            _exit_quietly(gp, camera)
    return CameraInfo(model, port, serial or f"port:{port}", BACKEND)


def list_cameras() -> list[CameraInfo]:
    """Every camera libgphoto2 detects, with its serial number.

    Each camera is opened briefly to read the ``serialnumber`` configuration value (Canon EOS:
    ``eosserialnumber``), falling back to the ``Serial Number:`` line of its summary. Where no
    serial number is available, or the camera cannot be opened (for example another program
    holds its USB device; a warning is logged), ``serial`` is ``"port:" + port``, which
    identifies the USB socket rather than the body and changes when the cable is moved.
    Cameras this process already holds open are reported without being opened again.

    Returns
    -------
    list of CameraInfo
        ``CameraInfo(model, port, serial, "gphoto2")`` in autodetect order.
    """
    gp = _gp()
    try:
        detected = _autodetect(gp)
    except gp.GPhoto2Error as exc:
        raise translate_error(exc, "camera autodetect") from exc
    return [_probe(gp, model, port) for model, port in detected]


def make_camera(serial: str | None = None, port: str | None = None) -> Gphoto2Camera:
    """A camera (not yet connected) bound to a serial number, a port, or the first found.

    Parameters
    ----------
    serial
        Serial number as reported by :func:`list_cameras`; :meth:`Gphoto2Camera.connect`
        finds the body on whatever port it is on now.
    port
        libgphoto2 port such as ``"usb:001,004"``; with ``serial`` too, the body on that port
        must have that serial number.
    """
    _gp()  # fail early, with the install hint, when python-gphoto2 is missing
    return Gphoto2Camera(serial=serial, port=port)


def _widget_kind(gp: Any, widget: Any) -> str | None:
    """Lower-case widget type name (``"radio"``, ``"range"``, ...), None for non-values."""
    widget_type = widget.get_type()
    for name in _VALUE_WIDGETS:
        if widget_type == getattr(gp, f"GP_WIDGET_{name}"):
            return name.lower()
    return None


def _walk(widget: Any) -> Iterator[Any]:
    """The widget and all its descendants, depth first."""
    stack = [widget]
    while stack:
        current = stack.pop()
        yield current
        children = [current.get_child(i) for i in range(current.count_children())]
        stack.extend(reversed(children))


def _format_number(value: float) -> str:
    return f"{value:g}"


def _choices(widget: Any) -> tuple[str, ...]:
    return tuple(str(widget.get_choice(i)) for i in range(widget.count_choices()))


def _setting_info(gp: Any, widget: Any, kind: str) -> SettingInfo:
    """One value widget as a :class:`SettingInfo` (values always as strings)."""
    name = str(widget.get_name())
    readonly = bool(widget.get_readonly())
    value = widget.get_value()
    if kind in ("radio", "menu"):
        return SettingInfo(
            name, "" if value is None else str(value), _choices(widget), readonly, kind
        )
    if kind == "range":
        low, high, step = widget.get_range()
        range_kind = f"range:{_format_number(low)}:{_format_number(high)}:{_format_number(step)}"
        return SettingInfo(name, _format_number(float(value)), (), readonly, range_kind)
    if kind in ("toggle", "date"):
        return SettingInfo(name, str(int(value)), (), readonly, kind)
    return SettingInfo(name, "" if value is None else str(value), (), readonly, kind)


def _flatten(gp: Any, root: Any) -> dict[str, SettingInfo]:
    """``{name: SettingInfo}`` for every value widget in a configuration tree."""
    settings: dict[str, SettingInfo] = {}
    for widget in _walk(root):
        kind = _widget_kind(gp, widget)
        name = str(widget.get_name())
        # Names are unique in practice; keep the first if a driver ever repeats one.
        if kind is not None and name not in settings:
            settings[name] = _setting_info(gp, widget, kind)
    return settings


def _get_widget(gp: Any, camera: Any, name: str) -> tuple[Any, Any | None]:
    """``(widget, root)``: ``root`` is None when the widget came from ``get_single_config``.

    ``get_single_config`` (libgphoto2 >= 2.5.10) reads one value instead of the whole tree,
    which on real bodies means one PTP request instead of dozens. Raises ``KeyError`` when the
    full tree has no such name.
    """
    if hasattr(camera, "get_single_config"):
        try:
            return camera.get_single_config(name), None
        except gp.GPhoto2Error as exc:
            if exc.code != gp.GP_ERROR_NOT_SUPPORTED:
                raise
    root = camera.get_config()
    for widget in _walk(root):
        if str(widget.get_name()) == name:
            return widget, root
    raise KeyError(name)


def _parse_toggle(value: str) -> int | None:
    return _TOGGLE_WORDS.get(value.strip().lower())


def _parse_date(value: str) -> int | None:
    """Unix time from ``"1700000000"`` or an ISO 8601 date (naive = host local time)."""
    text = value.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return int(parsed.timestamp())


class Gphoto2Camera(Camera):
    """One camera body through libgphoto2.

    Parameters
    ----------
    serial
        Serial number to find the body by (see :func:`list_cameras`); survives replugging.
    port
        libgphoto2 port (``"usb:001,004"``); fixed, so the body must stay in that socket.

    Notes
    -----
    Every :meth:`connect` opens a new ``gp.Camera`` object (re-initialising a closed one
    crashed the process). python-gphoto2 lets other Python threads run during blocking
    libgphoto2 calls, so one thread per body can trigger several bodies together.
    """

    backend = BACKEND

    def __init__(self, serial: str | None = None, port: str | None = None) -> None:
        self._want_serial = serial
        self._want_port = port
        self._camera: Any | None = None
        self._info: CameraInfo | None = None
        self._names: set[str] = set()
        self._viewfinder_on = False  # live view switched on by capture_preview
        # The virtual camera is one device however many objects there are (see module notes).
        self._lock: threading.RLock = _VIRTUAL_LOCK if _is_virtual() else threading.RLock()
        self.stats = CameraStats()

    # -- identity and connection -------------------------------------------------------------

    @property
    def is_connected(self) -> bool:
        return self._camera is not None

    @property
    def info(self) -> CameraInfo:
        """Model, port and serial number; before :meth:`connect`, what the camera was bound to."""
        if self._info is not None:
            return self._info
        return CameraInfo(
            model="gphoto2 camera",
            port=self._want_port or "",
            serial=self._want_serial or "",
            backend=BACKEND,
        )

    def _label(self) -> str:
        info = self.info
        return f"{info.model} ({info.serial or info.port or 'unbound'})"

    def _locate(self, gp: Any) -> tuple[str, str]:
        """``(model, port)`` of the body this object is bound to."""
        try:
            detected = _autodetect(gp)
        except gp.GPhoto2Error as exc:
            raise translate_error(exc, "camera autodetect", connecting=True) from exc
        if self._want_port is not None:
            for model, port in detected:
                if port == self._want_port:
                    return model, port
            ports = ", ".join(f"{port} ({model})" for model, port in detected) or "none"
            raise CameraNotFound(f"no camera on port {self._want_port}; cameras on: {ports}")
        if self._want_serial is not None:
            infos = [_probe(gp, model, port) for model, port in detected]
            for info in infos:
                if info.serial == self._want_serial:
                    return info.model, info.port
            connected = ", ".join(f"{i.serial} ({i.model} on {i.port})" for i in infos) or "none"
            unreadable = any(i.serial.startswith("port:") for i in infos)
            raise CameraNotFound(
                f"no camera with serial number {self._want_serial!r}; connected: {connected}"
                + (
                    " (a 'port:' entry is a camera whose serial number could not be read, "
                    "for example because another program holds it; see the log)"
                    if unreadable
                    else ""
                )
            )
        with _OPEN_PORTS_LOCK:
            free = [(model, port) for model, port in detected if port not in _OPEN_PORTS]
        if not free:
            held = f" ({len(detected)} already open in this process)" if detected else ""
            raise CameraNotFound(
                "no camera found: check the cable, switch the camera on and set it to PTP "
                f"(not mass-storage) mode{held}"
            )
        return free[0]

    def connect(self) -> None:
        """Find the body and open it.

        Raises
        ------
        CameraNotFound
            No body with the bound serial number or port (the message lists those present).
        UsbClaimError
            Another program holds the USB device.
        """
        if self._camera is not None:
            return
        gp = _gp()
        with self._lock:
            model, port = self._locate(gp)
            with _OPEN_PORTS_LOCK:
                holder = _OPEN_PORTS.get(port)
            if holder is not None:
                # A second gp.Camera on one port fails to claim USB (or, on the virtual
                # camera, silently shares the device), so refuse it here.
                raise CameraError(
                    f"{holder.model} ({holder.serial}) on {port} is already connected by "
                    "another camera object in this process"
                )
            try:
                # Always a new gp.Camera: exit() then init() on one object crashed the process.
                camera = _open(gp, model, port)
            except gp.GPhoto2Error as exc:
                raise translate_error(exc, f"{model} ({port}): open", connecting=True) from exc
            try:
                serial = _read_serial(gp, camera) or f"port:{port}"
                if self._want_serial is not None and serial != self._want_serial:
                    # Another body was plugged into that port between listing and opening.
                    raise CameraNotFound(
                        f"the camera on {port} has serial number {serial!r}, "
                        f"not {self._want_serial!r}"
                    )
                names = set(_flatten(gp, camera.get_config()))
            except BaseException:
                _exit_quietly(gp, camera)
                raise
            self._camera = camera
            self._info = CameraInfo(model, port, serial, BACKEND)
            self._names = names
            with _OPEN_PORTS_LOCK:
                _OPEN_PORTS[port] = self._info
        log.debug("connected %s on %s (serial %s)", model, port, serial)

    def disconnect(self) -> None:
        """Close the camera (``camera.exit()``); safe to call twice.

        Live view switched on by :meth:`capture_preview` is switched off first (best effort).
        """
        camera = self._camera
        if camera is None:
            return
        gp = _gp()
        with self._lock:
            if self._viewfinder_on:
                self._set_viewfinder(0)
            if self._camera is camera:
                self._drop(gp, camera)

    def _drop(self, gp: Any, camera: Any) -> None:
        self._camera = None
        self._viewfinder_on = False
        if self._info is not None:
            with _OPEN_PORTS_LOCK:
                _OPEN_PORTS.pop(self._info.port, None)
        _exit_quietly(gp, camera)

    def _still_present(self, gp: Any) -> bool:
        """Whether autodetect still sees a camera on this body's port."""
        if self._info is None:
            return False
        try:
            return any(port == self._info.port for _, port in _autodetect(gp))
        except gp.GPhoto2Error:
            return False

    def _call(self, what: str, operation: Callable[[Any], T]) -> T:
        """Run ``operation(gp_camera)`` under the lock, translating libgphoto2 errors.

        A generic (-1), I/O or "not found" error is checked against autodetect: when the body
        is no longer on the bus it becomes :class:`CameraDisconnected` (and this object is
        disconnected) instead of a retryable :class:`CameraIOError`.
        """
        gp = _gp()
        with self._lock:
            camera = self._camera
            if camera is None:
                raise CameraError(f"{self._label()}: {what}: not connected; call connect() first")
            try:
                return operation(camera)
            except gp.GPhoto2Error as exc:
                error = translate_error(exc, f"{self._label()}: {what}")
                suspicious = _codes(gp, (*_IO_CODES, "GP_ERROR"))
                if exc.code in suspicious and not self._still_present(gp):
                    error = CameraDisconnected(
                        f"{self._label()}: {what} failed: {exc}; the camera is no longer on "
                        "the bus (cable, power?); connect() finds it again by serial number",
                        exc.code,
                    )
                if isinstance(error, CameraDisconnected):
                    # Drop the dead handle so that a later connect() opens the body afresh.
                    self._drop(gp, camera)
                raise error from exc

    # -- settings ----------------------------------------------------------------------------

    def list_settings(self) -> dict[str, SettingInfo]:
        """Every value in the configuration tree (radio, menu, text, range, toggle, date).

        ``kind`` is the widget type; ranges have no choices and ``kind`` reads
        ``"range:<min>:<max>:<step>"``. Toggles and dates are given as integer strings (dates
        in Unix time).
        """
        gp = _gp()
        settings = self._call("read configuration", lambda c: _flatten(gp, c.get_config()))
        self._names = set(settings)
        return settings

    def _require_setting(self, name: str) -> None:
        if name in self._names:
            return
        # Available settings depend on the mode dial and lens, so re-read before giving up.
        self.list_settings()
        if name not in self._names:
            raise NotSupported(f"{name} not supported by {self.info.model}")

    def _widget(self, name: str) -> tuple[Any, Any | None]:
        gp = _gp()
        self._require_setting(name)

        def read(camera: Any) -> tuple[Any, Any | None]:
            try:
                return _get_widget(gp, camera, name)
            except KeyError:
                raise NotSupported(f"{name} not supported by {self.info.model}") from None

        return self._call(f"read {name}", read)

    def get_setting(self, name: str) -> str:
        """Current value of ``name`` as a string; :class:`NotSupported` if the body lacks it."""
        gp = _gp()
        widget, _ = self._widget(name)
        kind = _widget_kind(gp, widget)
        if kind is None:
            raise NotSupported(f"{name} is not a setting on {self.info.model}")
        return _setting_info(gp, widget, kind).value

    def set_setting(self, name: str, value: str) -> None:
        """Set ``name`` to ``value`` after checking it against what the body offers.

        Raises
        ------
        NotSupported
            The body has no such setting, or it is read-only.
        SettingValueError
            ``value`` is not offered; the message lists the allowed values (or the range).
        """
        gp = _gp()
        widget, root = self._widget(name)
        kind = _widget_kind(gp, widget)
        model = self.info.model
        if kind is None:
            raise NotSupported(f"{name} is not a setting on {model}")
        if widget.get_readonly():
            raise NotSupported(f"{name} is read-only on {model}")
        converted = self._convert(widget, kind, name, str(value))

        def write(camera: Any) -> None:
            try:
                widget.set_value(converted)
            except gp.GPhoto2Error as exc:
                raise SettingValueError(
                    f"{model} rejected {value!r} for {name}: {exc}", exc.code
                ) from exc
            if root is None:
                camera.set_single_config(name, widget)
            else:
                camera.set_config(root)

        self._call(f"set {name}={value}", write)

    def _convert(self, widget: Any, kind: str, name: str, value: str) -> str | int | float:
        """``value`` in the type the widget takes; :class:`SettingValueError` if not allowed."""
        model = self.info.model
        if kind in ("radio", "menu"):
            choices = _choices(widget)
            if value not in choices:
                raise SettingValueError(
                    f"{value!r} is not a value {model} offers for {name}; allowed: "
                    + ", ".join(choices)
                )
            return value
        if kind == "range":
            low, high, step = widget.get_range()
            allowed = (
                f"allowed: {_format_number(low)} to {_format_number(high)} "
                f"in steps of {_format_number(step)}"
            )
            try:
                number = float(value)
            except ValueError:
                raise SettingValueError(
                    f"{name} needs a number, not {value!r}; {allowed}"
                ) from None
            tolerance = abs(step) * 1e-6 if step else 1e-9
            if not math.isfinite(number) or not low - tolerance <= number <= high + tolerance:
                raise SettingValueError(
                    f"{value!r} is out of range for {name} on {model}; {allowed}"
                )
            return number
        if kind == "toggle":
            toggle = _parse_toggle(value)
            if toggle is None:
                raise SettingValueError(
                    f"{name} is on/off; allowed: 1, 0 (or on, off), not {value!r}"
                )
            return toggle
        if kind == "date":
            stamp = _parse_date(value)
            if stamp is None:
                raise SettingValueError(
                    f"{name} needs Unix time or an ISO 8601 date, not {value!r}"
                )
            return stamp
        return value

    # -- capture and files -------------------------------------------------------------------

    def capture(self, timeout_s: float) -> CameraFile:
        """Capture one image and return where it is on the camera.

        libgphoto2 cannot cancel a capture from outside, so ``timeout_s`` is not enforced: its
        own USB timeouts bound the call. A capture that takes longer is logged as a warning.
        """
        gp = _gp()
        start = time.monotonic()
        path = self._call("capture", lambda c: c.capture(gp.GP_CAPTURE_IMAGE))
        self.stats.captures += 1
        elapsed = time.monotonic() - start
        if elapsed > timeout_s:
            log.warning(
                "%s: capture took %.1f s (timeout %.1f s)", self._label(), elapsed, timeout_s
            )
        return CameraFile(str(path.folder), str(path.name))

    def trigger(self) -> None:
        """Fire the shutter and return; the image arrives as a ``file_added`` event."""
        self._call("trigger", lambda c: c.trigger_capture())
        self.stats.triggers += 1

    def wait_for_event(self, timeout_s: float) -> CameraEvent:
        """Next camera event, or ``CameraEvent("timeout")`` after about ``timeout_s`` seconds.

        libgphoto2 is asked in slices of at most 0.1 s because its own wait can overrun the
        timeout (the virtual camera took 0.6 s when asked to wait 0.3 s), so the overrun here
        stays within about 0.1 s.
        """
        gp = _gp()
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            remaining = deadline - time.monotonic()
            slice_s = min(max(remaining, 0.0), _EVENT_SLICE_S)
            started = time.monotonic()
            event_type, data = self._call("wait for event", _event_waiter(int(slice_s * 1000)))
            if event_type != gp.GP_EVENT_TIMEOUT:
                return self._event(gp, event_type, data)
            now = time.monotonic()
            if now >= deadline:
                return CameraEvent("timeout")
            if now - started < slice_s / 2:
                # The virtual camera reports a timeout at once; sleep rather than spin.
                time.sleep(min(deadline - now, 0.02))

    @staticmethod
    def _event(gp: Any, event_type: int, data: Any) -> CameraEvent:
        if event_type == gp.GP_EVENT_FILE_ADDED:
            return CameraEvent("file_added", CameraFile(str(data.folder), str(data.name)))
        if event_type == gp.GP_EVENT_CAPTURE_COMPLETE:
            return CameraEvent("capture_complete")
        if event_type == gp.GP_EVENT_FOLDER_ADDED:
            return CameraEvent("other", detail=f"folder added: {data.folder}/{data.name}")
        if event_type == getattr(gp, "GP_EVENT_FILE_CHANGED", None):
            return CameraEvent("other", detail=f"file changed: {data.folder}/{data.name}")
        return CameraEvent("other", detail="" if data is None else str(data))

    def download(self, file: CameraFile) -> bytes:
        """The bytes of ``file`` (``GP_FILE_TYPE_NORMAL``, i.e. the full file)."""
        gp = _gp()

        def fetch(camera: Any) -> bytes:
            camera_file = camera.file_get(file.folder, file.name, gp.GP_FILE_TYPE_NORMAL)
            # get_data_and_size returns a memoryview into libgphoto2's buffer: copy it out.
            return bytes(camera_file.get_data_and_size())

        data = self._call(f"download {file.path}", fetch)
        self.stats.downloads += 1
        return data

    # -- live view ---------------------------------------------------------------------------

    def _set_viewfinder(self, value: int) -> bool:
        """Set ``viewfinder`` (Canon EOS live view) where the body has it; best effort."""
        try:
            self.set_setting(_VIEWFINDER_SETTING, str(value))
        except CameraError as exc:
            log.debug("%s: viewfinder=%d failed: %s", self._label(), value, exc)
            return False
        self._viewfinder_on = bool(value)
        return True

    def capture_preview(self) -> bytes:
        """One live view frame (``camera.capture_preview()``) as JPEG bytes.

        The first call on a body with a ``viewfinder`` toggle (Canon EOS) sets it to 1 (best
        effort: a body that refuses still gets asked for the frame); :meth:`disconnect` sets
        it back to 0. Busy and I/O errors are retried a few times (live view often reports
        busy for a moment after it is switched on).

        Raises
        ------
        NotSupported
            The body serves no live view (libgphoto2 -6; the wheel's virtual camera, for one).
        CameraBusy, CameraIOError, CameraDisconnected
            As for :meth:`capture`, after the retries.
        """
        if self._camera is None:
            raise CameraError(f"{self._label()}: live view: not connected; call connect() first")
        if not self._viewfinder_on and _VIEWFINDER_SETTING in self._names:
            self._set_viewfinder(1)

        def grab(camera: Any) -> bytes:
            camera_file = camera.capture_preview()
            # get_data_and_size returns a memoryview into libgphoto2's buffer: copy it out.
            return bytes(camera_file.get_data_and_size())

        for attempt in range(1, _PREVIEW_TRIES + 1):
            try:
                data = self._call("live view frame", grab)
                break
            except NotSupported as exc:
                raise NotSupported(
                    f"{self.info.model} does not serve live view frames ({exc})", exc.code
                ) from exc
            except CameraError as exc:
                if not exc.retryable or attempt == _PREVIEW_TRIES:
                    raise
                log.debug("%s: live view frame, try %d: %s", self._label(), attempt, exc)
                time.sleep(_PREVIEW_PAUSE_S)
        self.stats.extra["previews"] = self.stats.extra.get("previews", 0) + 1
        return data

    # -- movie and clock ---------------------------------------------------------------------

    def start_movie(self) -> None:
        """Start recording (``movierecordtarget=Card`` on Canon EOS, ``movie=1`` elsewhere)."""
        control = movie_control(self.list_settings(), self.info.model)
        self.set_setting(control.setting, control.start_value)

    def stop_movie(self) -> None:
        """Stop recording; the movie file arrives as a ``file_added`` event."""
        control = movie_control(self.list_settings(), self.info.model)
        self.set_setting(control.setting, control.stop_value)

    def camera_time(self) -> dt.datetime | None:
        """The camera clock as a UTC-aware datetime, or None where the body has no clock value.

        Reads ``datetimeutc`` or ``datetime``. libgphoto2 gives date widgets as Unix time,
        having read a ``datetime`` clock (which has no time zone on the body) as host local
        time, so a body set to another zone is off by the zone difference. Text clocks
        (``"20240131T120000"`` or ISO 8601) are read as host local time too.
        """
        gp = _gp()
        if not self._names:
            self.list_settings()
        for name in _CLOCK_SETTINGS:
            if name not in self._names:
                continue
            widget, _ = self._widget(name)
            kind = _widget_kind(gp, widget)
            value = widget.get_value()
            if kind == "date" and int(value) > 0:
                return dt.datetime.fromtimestamp(int(value), tz=dt.timezone.utc)
            if kind == "text":
                parsed = _parse_clock_text(str(value))
                if parsed is not None:
                    return parsed
        return None


def _event_waiter(milliseconds: int) -> Callable[[Any], tuple[int, Any]]:
    """``camera.wait_for_event(milliseconds)`` as a one-argument function for ``_call``."""

    def wait(camera: Any) -> tuple[int, Any]:
        event_type, data = camera.wait_for_event(milliseconds)
        return int(event_type), data

    return wait


def _parse_clock_text(text: str) -> dt.datetime | None:
    """A text clock (``20240131T120000`` or ISO 8601) as UTC; naive = host local time."""
    for parse in (
        lambda s: dt.datetime.strptime(s, "%Y%m%dT%H%M%S"),
        dt.datetime.fromisoformat,
    ):
        try:
            parsed = parse(text.strip())
        except ValueError:
            continue
        return parsed.astimezone(dt.timezone.utc)
    return None
