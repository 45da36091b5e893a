"""Versions of everything expokit relies on; optional parts are named when missing."""

from __future__ import annotations

import importlib
import platform
import sys
from collections.abc import Callable


def _module_version(module: str, attr: str = "__version__") -> Callable[[], str]:
    def read() -> str:
        return str(getattr(importlib.import_module(module), attr))

    return read


def _libraw() -> str:
    import rawpy

    return ".".join(map(str, rawpy.libraw_version))


def _opencv() -> str:
    import cv2

    contrib = "contrib" if hasattr(cv2, "xfeatures2d") or hasattr(cv2, "ximgproc") else "no contrib"
    return f"{cv2.__version__} ({contrib})"


def _libgphoto2() -> str:
    import gphoto2 as gp

    versions = gp.gp_library_version(gp.GP_VERSION_SHORT)
    return str(versions[0]) if versions else "unknown"


def _ffmpeg() -> str:
    import subprocess

    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    first = subprocess.run(
        [exe, "-version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.splitlines()
    version = first[0].split(" ")[2] if first else "unknown"
    return f"{version} ({exe})"


#: (label, reader, how to install when missing)
COMPONENTS: list[tuple[str, Callable[[], str], str]] = [
    ("numpy", _module_version("numpy"), "pip install numpy"),
    ("pandas", _module_version("pandas"), "pip install pandas"),
    ("pyarrow", _module_version("pyarrow"), "pip install pyarrow"),
    ("rawpy", _module_version("rawpy"), "pip install rawpy"),
    ("LibRaw", _libraw, "pip install rawpy"),
    ("OpenCV", _opencv, "pip install opencv-contrib-python"),
    ("scikit-image", _module_version("skimage"), "pip install scikit-image"),
    ("python-gphoto2", _module_version("gphoto2"), "pip install 'expokit[capture]'"),
    ("libgphoto2", _libgphoto2, "pip install 'expokit[capture]'"),
    ("torch", _module_version("torch"), "pip install torch==2.13.0 (CPU) or see pytorch.org"),
    ("ray", _module_version("ray"), "pip install 'expokit[ray]' (optional)"),
    ("ffmpeg", _ffmpeg, "pip install imageio-ffmpeg"),
]


def collect_versions() -> list[tuple[str, str | None, str]]:
    """Return ``(component, version or None, note)``; never raises for a missing part."""
    from expokit import __version__

    rows: list[tuple[str, str | None, str]] = [
        ("expokit", __version__, ""),
        ("Python", platform.python_version(), sys.executable),
    ]
    for label, reader, install in COMPONENTS:
        try:
            rows.append((label, reader(), ""))
        except Exception as exc:
            reason = "not installed" if isinstance(exc, ImportError) else f"unusable: {exc}"
            rows.append((label, None, f"{reason}; {install}"))
    return rows
