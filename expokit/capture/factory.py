"""Create cameras by backend name; optional SDKs are imported only when asked for."""

from __future__ import annotations

from typing import Any

from expokit.capture.backends.base import Camera, CameraInfo
from expokit.core.errors import ExpokitError

BACKENDS: tuple[str, ...] = ("gphoto2", "fake")


def _module(backend: str) -> Any:
    if backend == "gphoto2":
        from expokit.capture.backends import gphoto2_backend

        return gphoto2_backend
    if backend == "fake":
        from expokit.capture.backends import fake

        return fake
    raise ExpokitError(f"unknown camera backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def list_cameras(backend: str, **options: Any) -> list[CameraInfo]:
    """Cameras the backend sees now (model, port, serial)."""
    return list(_module(backend).list_cameras(**options))


def open_camera(backend: str, serial: str | None = None, **options: Any) -> Camera:
    """A (not yet connected) camera of ``backend`` bound to ``serial`` (first found if None)."""
    camera: Camera = _module(backend).make_camera(serial=serial, **options)
    return camera
