"""Generic setting names -> the names different bodies use, and movie control per vendor.

libgphoto2 exposes each body's own configuration names: generic PTP, Nikon and Sony call the
aperture ``f-number``, Canon EOS ``aperture``; image format is ``imageformat`` (Canon) or
``imagequality`` (Nikon, Sony). Movie recording is ``movierecordtarget=Card``/``None`` on
Canon EOS and ``movie=1``/``0`` on Nikon and Sony.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from expokit.capture.backends.base import NotSupported

#: generic name -> candidate camera names, most common first.
SETTING_ALIASES: dict[str, tuple[str, ...]] = {
    "shutter": ("shutterspeed", "shutterspeed2", "exposuretime"),
    "aperture": ("f-number", "aperture", "fnumber"),
    "iso": ("iso", "isospeed"),
    "exposure_compensation": (
        "exposurecompensation",
        "exposurecompensation2",
        "exposurebiascompensation",
    ),
    "image_format": ("imageformat", "imagequality", "imageformatsd", "imageformatcf"),
    "capture_target": ("capturetarget",),
}

GENERIC_SETTINGS: tuple[str, ...] = tuple(SETTING_ALIASES)


def resolve_setting(generic: str, available: Iterable[str], model: str) -> str:
    """The camera's own name for ``generic`` (a camera name passes through unchanged).

    Raises
    ------
    NotSupported
        ``"<setting> not supported by <model>"`` when no candidate exists on the body.
    """
    names = set(available)
    if generic in names:
        return generic
    for candidate in SETTING_ALIASES.get(generic, ()):
        if candidate in names:
            return candidate
    tried = ", ".join(SETTING_ALIASES.get(generic, (generic,)))
    raise NotSupported(f"{generic} not supported by {model} (looked for: {tried})")


@dataclass(frozen=True)
class MovieControl:
    """How a body starts and stops movie recording through its configuration."""

    setting: str
    start_value: str
    stop_value: str


MOVIE_CONTROLS: tuple[MovieControl, ...] = (
    MovieControl("movierecordtarget", "Card", "None"),  # Canon EOS
    MovieControl("movie", "1", "0"),  # Nikon, Sony
)


def movie_control(available: Iterable[str], model: str) -> MovieControl:
    """The movie control the body offers; :class:`NotSupported` when it has none."""
    names = set(available)
    for control in MOVIE_CONTROLS:
        if control.setting in names:
            return control
    raise NotSupported(f"movie recording not supported by {model}")
