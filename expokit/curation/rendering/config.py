"""Render parameters: one typed, validated, hashable dataclass that owns every default.

Everything that changes the bytes of an output is a field here (or a library version), so
:meth:`RenderConfig.params_hash` identifies a render exactly and re-runs can skip work.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from expokit.core.ev import MSEC_LADDER, ev_token, validate_ladder
from expokit.core.hashing import stable_hash
from expokit.core.transfer import Transfer
from expokit.curation.rendering.raw_decode import library_versions

#: Bump when the render code changes output bytes for the same parameters.
RENDER_ALGORITHM_VERSION = 1


class OutputFormat(str, Enum):
    """Image formats ``expokit render`` writes. 8-bit formats are sRGB-encoded."""

    JPG = "jpg"
    PNG = "png"
    PNG16 = "png16"
    PNG16_LINEAR = "png16-linear"
    TIFF16 = "tiff16"
    TIFF16_LINEAR = "tiff16-linear"

    @property
    def bits(self) -> Literal[8, 16]:
        return 8 if self in (OutputFormat.JPG, OutputFormat.PNG) else 16

    @property
    def transfer(self) -> Transfer:
        return "linear" if self.value.endswith("-linear") else "srgb"

    @property
    def suffix(self) -> str:
        """File-name ending: ``.jpg``, ``.png``, ``.srgb16.png``, ``.lin16.tif``, ..."""
        ext = {"jpg": ".jpg", "png": ".png"}.get(self.value[:3], ".tif")
        if self.bits == 8:
            return ext
        return (".lin16" if self.transfer == "linear" else ".srgb16") + ext


LAYOUTS: tuple[str, ...] = ("sequence", "msec")
WB_POLICIES: tuple[str, ...] = ("camera", "daylight", "unity")
METER_STATISTICS: tuple[str, ...] = ("median", "mean")


@dataclass(frozen=True)
class MeterSpec:
    """Normalise the base exposure so ``statistic`` of EV 0 luminance equals ``target``.

    Luminance is Rec. 709 ``Y`` of the linear render in ``[0, 1]`` (1 = saturation). The
    offset ``log2(target / statistic)`` is added to every EV of the ladder and recorded.
    """

    statistic: str = "median"
    target: float = 0.18

    def __post_init__(self) -> None:
        if self.statistic not in METER_STATISTICS:
            raise ValueError(
                f"meter statistic must be one of {', '.join(METER_STATISTICS)}, "
                f"got {self.statistic!r}"
            )
        if not (math.isfinite(self.target) and 0.0 < self.target < 1.0):
            raise ValueError(f"meter target must be in (0, 1), got {self.target}")

    @classmethod
    def parse(cls, text: str) -> MeterSpec:
        """Parse ``"median:0.18"`` (``"median"`` alone uses the default target 0.18)."""
        statistic, _, target = text.partition(":")
        try:
            return cls(statistic.strip(), float(target) if target else 0.18)
        except ValueError as exc:
            raise ValueError(f"bad --meter {text!r}: {exc}") from None

    def __str__(self) -> str:
        return f"{self.statistic}:{self.target:g}"


@dataclass(frozen=True)
class RenderConfig:
    """Every parameter of a multi-EV render from RAW.

    Attributes
    ----------
    evs
        EV ladder relative to the base exposure (sorted, unique tokens).
    formats
        Output formats; each EV is written in each format.
    layout
        ``"sequence"``: ``<out>/<name>/<name>_<token><suffix>``. ``"msec"``:
        ``INPUT_IMAGES/<name>_<token>.JPG`` and ``GT_IMAGES/<name>.jpg`` (JPEG only).
    gt_ev
        EV written as ground truth in the ``msec`` layout.
    white_balance
        ``"camera"``: the file's as-shot multipliers, falling back to ``"daylight"`` (LibRaw's
        D65 multipliers from the colour matrix) and then ``"unity"`` when missing. The source
        used is recorded per file.
    meter
        Optional base-exposure normalisation; ``None`` keeps the exposure as shot.
    jpeg_quality, png_compression
        Encoder settings (OpenCV).
    demosaic
        LibRaw demosaic algorithm name (``rawpy.DemosaicAlgorithm``).
    sanity_checks
        Reject files that decode into blank or noise images, or that render white/black.
    """

    evs: tuple[float, ...] = MSEC_LADDER
    formats: tuple[OutputFormat, ...] = (OutputFormat.JPG,)
    layout: str = "sequence"
    gt_ev: float = 0.0
    white_balance: str = "camera"
    meter: MeterSpec | None = None
    jpeg_quality: int = 95
    png_compression: int = 1
    demosaic: str = "AHD"
    sanity_checks: bool = True

    def __post_init__(self) -> None:
        # Types first: a string "false" or a float quality would otherwise pass silently.
        for name in ("jpeg_quality", "png_compression"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if not isinstance(self.sanity_checks, bool):
            raise ValueError(f"sanity_checks must be true or false, got {self.sanity_checks!r}")
        if isinstance(self.gt_ev, bool) or not isinstance(self.gt_ev, (int, float)):
            raise ValueError(f"gt_ev must be a number, got {self.gt_ev!r}")
        object.__setattr__(self, "evs", validate_ladder(list(self.evs)))
        formats = tuple(OutputFormat(f) for f in self.formats)
        if not formats:
            raise ValueError("at least one output format is needed")
        if len(set(formats)) != len(formats):
            raise ValueError("an output format is listed twice")
        object.__setattr__(self, "formats", formats)
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.layout == "msec":
            if formats != (OutputFormat.JPG,):
                raise ValueError("the msec layout is JPEG only (peers' loaders read .JPG/.jpg)")
            if ev_token(self.gt_ev) not in {ev_token(e) for e in self.evs}:
                raise ValueError(f"gt EV {self.gt_ev:g} is not in the EV ladder {self.evs}")
        if self.white_balance not in WB_POLICIES:
            raise ValueError(
                f"white balance must be one of {', '.join(WB_POLICIES)}, got {self.white_balance!r}"
            )
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"JPEG quality must be 1..100, got {self.jpeg_quality}")
        if not 0 <= self.png_compression <= 9:
            raise ValueError(f"PNG compression must be 0..9, got {self.png_compression}")
        import rawpy  # local: keep `import expokit.curation` light

        if not hasattr(rawpy.DemosaicAlgorithm, self.demosaic):
            names = ", ".join(a.name for a in rawpy.DemosaicAlgorithm)
            raise ValueError(f"unknown demosaic algorithm {self.demosaic!r} ({names})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every parameter (enums as values)."""
        out = dataclasses.asdict(self)
        out["evs"] = list(self.evs)
        out["formats"] = [f.value for f in self.formats]
        out["meter"] = str(self.meter) if self.meter else None
        return out

    def params_hash(self) -> str:
        """Hash of the parameters plus LibRaw/rawpy versions and the render algorithm version."""
        return stable_hash(
            {"config": self.to_dict(), "libs": library_versions(), "algo": RENDER_ALGORITHM_VERSION}
        )
