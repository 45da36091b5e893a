"""The camera interface every backend implements, and the errors it raises.

Kept small on purpose (like LeRobot's camera ABC): connect/disconnect (and a context
manager), settings, capture, trigger + wait for file events with a deadline, download,
movie start/stop, live view (one JPEG frame at a time), identity (model, port, serial number)
and the camera clock.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar

from expokit.core.errors import ExpokitError


@dataclass(frozen=True)
class CameraInfo:
    """A camera as found on the bus: ``serial`` identifies a body, ``port`` does not."""

    model: str
    port: str
    serial: str
    backend: str


@dataclass(frozen=True)
class SettingInfo:
    """One configuration value: current value, allowed choices (empty = free), read-only."""

    name: str
    value: str
    choices: tuple[str, ...] = ()
    readonly: bool = False
    kind: str = "text"


@dataclass(frozen=True)
class CameraFile:
    """A file on the camera (folder + name), as reported by capture or a FILE_ADDED event."""

    folder: str
    name: str

    @property
    def path(self) -> str:
        return f"{self.folder.rstrip('/')}/{self.name}"


@dataclass(frozen=True)
class CameraEvent:
    """An event from :meth:`Camera.wait_for_event`.

    ``kind`` is ``"file_added"`` (with ``file``), ``"capture_complete"``, ``"timeout"`` or
    ``"other"``.
    """

    kind: str
    file: CameraFile | None = None
    detail: str = ""


class CameraError(ExpokitError):
    """A camera operation failed. ``code`` is the libgphoto2 error code where there is one."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class CameraBusy(CameraError):
    """The camera is busy (libgphoto2 -110); retry after a pause."""

    retryable = True


class CameraIOError(CameraError):
    """An I/O error on the USB link (libgphoto2 -7, -35, ...); retry."""

    retryable = True


class CameraDisconnected(CameraError):
    """The camera went away (cable, power); find it again by serial number."""


class UsbClaimError(CameraError):
    """The USB device is held by another program (libgphoto2 -53)."""

    HINT = (
        "another program holds the camera's USB device (libgphoto2 error -53): on Linux a "
        "desktop automounter such as gvfs-gphoto2-volume-monitor grabs cameras on plug-in; "
        "stop it (e.g. `pkill -f gvfs-gphoto2`) or unmount the camera in the file manager"
    )


class NotSupported(CameraError):
    """The camera lacks a feature or a setting."""


class SettingValueError(CameraError):
    """A value the camera does not offer; the message lists the allowed values."""


class CameraNotFound(CameraError):
    """No connected camera has the requested serial number or port."""


@dataclass
class CameraStats:
    """Counters a backend keeps (captures, retries) for diagnostics and tests."""

    captures: int = 0
    triggers: int = 0
    downloads: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Camera(ABC):
    """One camera body.

    Implementations release the GIL in blocking calls where their SDK does, so one thread
    per camera can trigger bodies together. A ``Camera`` object is not thread-safe: use it
    from one thread at a time.
    """

    backend: ClassVar[str] = "abstract"

    def __enter__(self) -> Camera:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.disconnect()

    @abstractmethod
    def connect(self) -> None:
        """Open the camera; raises :class:`CameraNotFound`, :class:`UsbClaimError`, ..."""

    @abstractmethod
    def disconnect(self) -> None:
        """Close the camera; safe to call twice."""

    @property
    @abstractmethod
    def is_connected(self) -> bool: ...

    @property
    @abstractmethod
    def info(self) -> CameraInfo:
        """Model, port and serial number (valid after :meth:`connect`)."""

    @abstractmethod
    def list_settings(self) -> dict[str, SettingInfo]:
        """Every configuration value by name (the camera's own names)."""

    @abstractmethod
    def get_setting(self, name: str) -> str:
        """Current value of the camera's setting ``name``; :class:`NotSupported` if absent."""

    @abstractmethod
    def set_setting(self, name: str, value: str) -> None:
        """Set ``name``; :class:`SettingValueError` (listing choices) for a bad value."""

    @abstractmethod
    def capture(self, timeout_s: float) -> CameraFile:
        """Capture one image and return where it is on the camera."""

    @abstractmethod
    def trigger(self) -> None:
        """Fire the shutter and return at once; the file arrives as a ``file_added`` event."""

    @abstractmethod
    def wait_for_event(self, timeout_s: float) -> CameraEvent:
        """Next event, or ``CameraEvent("timeout")`` after ``timeout_s`` seconds."""

    @abstractmethod
    def download(self, file: CameraFile) -> bytes:
        """The bytes of ``file``."""

    @abstractmethod
    def start_movie(self) -> None:
        """Start recording video; :class:`NotSupported` where the body cannot."""

    @abstractmethod
    def stop_movie(self) -> None:
        """Stop recording; the movie file arrives as a ``file_added`` event."""

    def capture_preview(self) -> bytes:
        """One frame of the live view, as the bytes of a JPEG file.

        The frame is what the body's screen shows (the test camera's is still mirrored by
        the splitter), at the body's live-view size (about 1024x680 on DSLRs), and nothing
        is stored on the card. Backends switch live view on where the body needs it (Canon
        EOS: ``viewfinder`` = 1) and off again on :meth:`disconnect`. Call it repeatedly for a
        live stream; each call returns a new frame.

        Raises
        ------
        NotSupported
            The body (or backend) cannot serve live view.
        CameraBusy, CameraIOError
            Retryable failures, as for :meth:`capture`.
        """
        raise NotSupported(f"{self.info.model}: live view is not supported by this backend")

    def camera_time(self) -> dt.datetime | None:
        """The camera clock, or ``None`` where the body does not report it."""
        return None

    def wait_for_file(self, timeout_s: float) -> CameraFile:
        """Wait until a ``file_added`` event, at most ``timeout_s`` seconds in total.

        Bodies (and the virtual camera) send endless unrelated events, so the loop runs
        against a deadline, never an event count.
        """
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            event = self.wait_for_event(min(remaining, 1.0))
            if event.kind == "file_added" and event.file is not None:
                return event.file
        raise CameraIOError(f"{self.info.model}: no new file within {timeout_s:g} s")
