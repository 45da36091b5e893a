"""Live rig alignment: analyse a stream of live-view pairs, keep the latest figures.

``expokit align live`` reads one JPEG live-view frame from each body
(``capture_preview() -> bytes``), measures the test view against the reference in the
conventions of :mod:`expokit.calibration.alignment_check` and keeps the latest result and a
minute of history in a :class:`LiveState` (served by :mod:`expokit.calibration.live_page`,
or printed one plain line per analysis by the terminal mode).

Fast path
---------
:func:`~expokit.calibration.alignment_check.check_alignment` runs a full geometric
calibration (flip detection, SIFT, ``USAC_MAGSAC``, ECC) per pair: too slow for a live view.
:class:`LiveAnalyzer` runs it on the first pair, after tracking is lost, and every
``full_every`` pairs (in a background thread: its homography is taken up when it is done);
in between it *tracks*: both views downscaled to ``track_side`` (the
mirror undone with the last full check's flip, linear light), one ECC homography refinement
started from the last estimate, then roll/scale/shift/keystone/coverage from
:func:`~expokit.calibration.alignment_check.measure_homography` and EV, white balance and
focus on the small views. Parallax (a second plane in the matches) comes from the last full
check. A tracked estimate whose ECC correlation falls below ``min_correlation`` is dropped
and the next pair gets a full check.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from expokit.calibration.alignment_check import (
    AlignmentCheckConfig,
    AlignmentFigures,
    alignment_advice,
    check_alignment,
    linear_light,
    measure_homography,
    photometry,
    view_focus_ratio,
)
from expokit.calibration.homography import image_size, resize_to_max_side, resized_scale
from expokit.calibration.mirror import Flip
from expokit.calibration.parallax import board_outline
from expokit.core.checks import in_range, positive, whole
from expokit.core.errors import ExpokitError
from expokit.core.synthetic import feature_texture
from expokit.core.transfer import srgb_decode, srgb_encode

__all__ = [
    "LiveAnalyzer",
    "LiveConfig",
    "LiveResult",
    "LiveState",
    "PairSource",
    "RigPreviewSource",
    "SyntheticPreviewSource",
    "format_line",
    "run_live",
]

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

#: Figures kept in the history (key in :meth:`LiveResult.to_dict`).
HISTORY_KEYS = ("roll_deg", "scale_pct", "shift_len_px", "ev_offset", "focus_ratio", "coverage")


class PairSource(Protocol):
    """Anything that yields one ``(reference_jpeg, test_jpeg)`` live-view pair per call."""

    def read_pair(self) -> tuple[bytes, bytes]: ...


@dataclass(frozen=True)
class LiveConfig:
    """Parameters of :class:`LiveAnalyzer`.

    Attributes
    ----------
    check
        The full check's parameters and the "ready" thresholds.
    track_side
        Longer side of the views for tracking (px).
    full_every
        Run the full check every this many pairs (1: every pair, no tracking).
    min_correlation
        ECC correlation below which tracking counts as lost.
    history_s
        Seconds of history kept.
    background
        Run the periodic full checks in a thread while tracking goes on (off: block on
        them). The first pair and a lost track always block.
    """

    check: AlignmentCheckConfig = field(default_factory=AlignmentCheckConfig)
    track_side: int = 512
    full_every: int = 15
    min_correlation: float = 0.6
    history_s: float = 60.0
    background: bool = True

    def __post_init__(self) -> None:
        whole("track side", self.track_side, 64)
        whole("full check every", self.full_every, 1)
        in_range("min correlation", self.min_correlation, 0, 1)
        positive("history", self.history_s, "s")


@dataclass(frozen=True, kw_only=True)
class LiveResult(AlignmentFigures):
    """One analysed live pair: the :class:`~.alignment_check.AlignmentFigures` and when and
    how they were measured.

    Attributes
    ----------
    index
        Number of the pair since the start (1 = first).
    time_s
        Seconds since the start.
    mode
        ``"full"`` (a full check) or ``"track"`` (ECC tracking from the last full check).
    latency_ms
        Time from reading the live views to the result (milliseconds).
    correlation
        ECC correlation of the tracked pair (``None`` after a full check).
    thresholds
        The verdict's thresholds as shown on the page.
    """

    index: int
    time_s: float
    mode: str
    latency_ms: float
    correlation: float | None
    thresholds: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``/state.json``'s ``latest``)."""
        return {
            "index": self.index,
            "time_s": self.time_s,
            "mode": self.mode,
            "latency_ms": self.latency_ms,
            **self.figures_dict(),
            "shift_len_px": math.hypot(*self.shift_px),
            "correlation": self.correlation,
            "thresholds": self.thresholds,
        }


def decode_jpeg(data: bytes) -> U8:
    """BGR uint8 image from JPEG (or PNG) bytes; :class:`ExpokitError` when undecodable."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ExpokitError(f"live-view frame of {len(data)} bytes is not a decodable image")
    return np.asarray(image, np.uint8)


def encode_jpeg(image: npt.NDArray[Any], quality: int = 85) -> bytes:
    """JPEG bytes of a BGR or gray uint8 image."""
    import cv2

    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ExpokitError("could not encode a JPEG")
    return bytes(buffer.tobytes())


# --------------------------------------------------------------------------- analysis


class LiveAnalyzer:
    """Analyse live-view pairs: full check now and then, ECC tracking in between."""

    def __init__(self, config: LiveConfig | None = None) -> None:
        self.config = config or LiveConfig()
        self._h: F64 | None = None  # flipped test -> reference, full resolution
        self._flip = Flip.NONE
        self._parallax: dict[str, Any] | None = None
        self._since_full = 0
        self._count = 0
        self._start = time.monotonic()
        #: Last views for the page: reference and the flipped test warped onto it (small).
        self.views: tuple[U8, U8, U8] | None = None
        self._worker: threading.Thread | None = None
        self._done: tuple[F64, Flip, dict[str, Any] | None] | None = None

    def analyze(self, reference_jpeg: bytes, test_jpeg: bytes) -> LiveResult:
        """Measure one pair (raises on undecodable frames and when a blocking full check
        fails; a failed background check only drops that check)."""
        t0 = time.perf_counter()
        ref = decode_jpeg(reference_jpeg)
        test = decode_jpeg(test_jpeg)
        mode = "track"
        correlation: float | None = None
        self._adopt_background()
        due = self._since_full + 1 >= self.config.full_every
        if self._h is None or (due and not self.config.background):
            self._full(reference_jpeg, test_jpeg)
            mode = "full"
        else:
            if due:
                self._start_background(reference_jpeg, test_jpeg)
            correlation = self._track(ref, test)
            if correlation is None:
                self._full(reference_jpeg, test_jpeg)
                mode = "full"
        self._since_full = 0 if mode == "full" else self._since_full + 1
        assert self._h is not None
        result = self._measure(ref, test, self._h, mode, correlation)
        self._count += 1
        latency = (time.perf_counter() - t0) * 1e3
        return _with_latency(result, latency)

    def _start_background(self, reference_jpeg: bytes, test_jpeg: bytes) -> None:
        """Run a full check in a thread; :meth:`_adopt_background` takes its homography."""
        if self._worker is not None:
            return

        def work() -> None:
            try:
                self._done = self._check(reference_jpeg, test_jpeg)
            except ExpokitError:
                self._done = None

        self._since_full = -1  # counted from now
        self._worker = threading.Thread(target=work, name="expokit-live-full", daemon=True)
        self._worker.start()

    def _adopt_background(self) -> None:
        if self._worker is None or self._worker.is_alive():
            return
        self._worker = None
        done, self._done = self._done, None
        if done is not None:
            self._h, self._flip, self._parallax = done

    def close(self) -> None:
        """Wait for a running background check (at most a few seconds)."""
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None

    def _check(
        self, reference_jpeg: bytes, test_jpeg: bytes
    ) -> tuple[F64, Flip, dict[str, Any] | None]:
        with tempfile.TemporaryDirectory(prefix="expokit-live-") as tmp:
            ref_path, test_path = Path(tmp) / "reference.jpg", Path(tmp) / "test.jpg"
            ref_path.write_bytes(reference_jpeg)
            test_path.write_bytes(test_jpeg)
            check = check_alignment(ref_path, test_path, self.config.check)
        return np.asarray(check.homography, np.float64), Flip(check.flip), check.parallax

    def _full(self, reference_jpeg: bytes, test_jpeg: bytes) -> None:
        self._h, self._flip, self._parallax = self._check(reference_jpeg, test_jpeg)

    def _small_gray(self, image: U8) -> tuple[npt.NDArray[np.float32], F64]:
        """Linear gray small view and the full -> small map."""
        import cv2

        small, _ = resize_to_max_side(image, self.config.track_side)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
        if self.config.check.transfer == "srgb":
            gray = np.asarray(srgb_decode(gray), np.float32)
        return gray, resized_scale(image_size(image), image_size(small))

    def _track(self, ref: U8, test: U8) -> float | None:
        """Refine the last homography by ECC on the small views; ``None`` when lost."""
        import cv2

        assert self._h is not None
        ref_g, s_r = self._small_gray(ref)
        test_g, s_t = self._small_gray(self._flip.apply(test))
        h_small = s_r @ self._h @ np.linalg.inv(s_t)
        warp = np.linalg.inv(h_small).astype(np.float32)  # ECC: template (ref) -> input (test)
        warp /= warp[2, 2]
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-5)
        try:
            rho, found = cv2.findTransformECC(
                ref_g,
                test_g,
                warp,
                cv2.MOTION_HOMOGRAPHY,
                criteria,
                self._far_mask(ref_g.shape, s_r),
                3,
            )
        except cv2.error:
            self._h = None
            return None
        if not math.isfinite(rho) or rho < self.config.min_correlation:
            self._h = None
            return None
        h_new = np.linalg.inv(s_r) @ np.linalg.inv(np.asarray(found, np.float64)) @ s_t
        self._h = h_new / h_new[2, 2]
        return float(rho)

    def _far_mask(self, shape: tuple[int, ...], full_to_small: F64) -> U8:
        """ECC mask of the small reference view: everything but the near board (with a
        margin) when the last full check found one, so tracking follows the far layer that
        the full check's figures are for."""
        import cv2

        mask = np.ones(shape[:2], np.uint8)
        region = (self._parallax or {}).get("near_region")
        if region:
            points = board_outline(np.asarray(region, np.float64)) * full_to_small[0, 0]
            cv2.fillConvexPoly(mask, np.round(points).astype(np.int32), 0)
            mask = np.asarray(cv2.erode(mask, np.ones((9, 9), np.uint8)), np.uint8)
        return mask

    def _measure(
        self, ref: U8, test: U8, h: F64, mode: str, correlation: float | None
    ) -> LiveResult:
        """All figures from ``h``; photometry and focus on the small views."""
        import cv2

        config = self.config.check
        roll, scale_pct, shift, keystone, coverage = measure_homography(
            h, image_size(test), image_size(ref)
        )
        ref_small, _ = resize_to_max_side(ref, self.config.track_side)
        test_flipped = self._flip.apply(test)
        test_small, _ = resize_to_max_side(test_flipped, self.config.track_side)
        s_r = resized_scale(image_size(ref), image_size(ref_small))
        s_t = resized_scale(image_size(test_flipped), image_size(test_small))
        h_small = s_r @ h @ np.linalg.inv(s_t)
        ref_rgb, ref_ok = linear_light(ref_small, config.transfer)
        test_rgb, test_ok = linear_light(test_small, config.transfer)
        try:
            ev_offset, white_balance = photometry(ref_rgb, ref_ok, test_rgb, test_ok, h_small)
        except ExpokitError:
            ev_offset, white_balance = float("nan"), (float("nan"),) * 3
        lum = np.array([0.2126, 0.7152, 0.0722], np.float32)
        focus = view_focus_ratio(ref_rgb @ lum, test_rgb @ lum, h_small)
        t = config.thresholds
        ev_for_advice = ev_offset if math.isfinite(ev_offset) else 0.0
        advice = alignment_advice(
            self._flip, roll, scale_pct, shift, keystone, ev_for_advice, focus, coverage, t
        )
        if self._parallax is not None:
            advice += list(self._parallax.get("advice", ()))
        if not math.isfinite(ev_offset):
            advice.append("too few usable pixels to measure the exposure")
        warped = cv2.warpPerspective(test_small, h_small, image_size(ref_small))
        self.views = (np.asarray(ref_small), np.asarray(test_small), np.asarray(warped))
        thresholds = {
            "max_roll_deg": t.max_roll_deg,
            "max_scale_pct": t.max_scale_pct,
            "max_shift_px": t.max_shift_px,
            "max_keystone_pct": t.max_keystone_pct,
            "focus_ratio": list(t.focus_ratio),
            "min_coverage": t.min_coverage,
            "expected_ev": t.expected_ev,
            "max_ev_error": t.max_ev_error,
            "max_parallax_px": t.max_parallax_px,
        }
        return LiveResult(
            index=self._count,
            time_s=time.monotonic() - self._start,
            mode=mode,
            latency_ms=0.0,
            flip=self._flip.value,
            homography=h.copy(),
            roll_deg=roll,
            scale_pct=scale_pct,
            shift_px=shift,
            keystone=keystone,
            parallax=self._parallax,
            ev_offset=ev_offset,
            white_balance=white_balance,
            focus_ratio=focus,
            coverage=coverage,
            correlation=correlation,
            verdict="adjust" if advice else "ready",
            advice=tuple(advice),
            thresholds=thresholds,
        )


def _with_latency(result: LiveResult, latency_ms: float) -> LiveResult:
    from dataclasses import replace

    return replace(result, latency_ms=latency_ms)


# --------------------------------------------------------------------------- state


def overlay(reference: U8, warped: U8, mode: str, gain: float = 1.0) -> U8:
    """``blend``, ``difference`` or ``checker`` of the reference and the warped test view.

    ``gain`` (linear light) brightens the test view to the reference's exposure first.
    """
    import cv2

    test = warped
    if gain != 1.0 and math.isfinite(gain) and gain > 0:
        lin = np.asarray(srgb_decode(warped.astype(np.float32) / 255.0), np.float32) * gain
        test = np.clip(np.asarray(srgb_encode(np.clip(lin, 0, 1))) * 255 + 0.5, 0, 255)
        test = test.astype(np.uint8)
    if mode == "blend":
        return np.asarray(cv2.addWeighted(reference, 0.5, test, 0.5, 0), np.uint8)
    if mode == "difference":
        diff = cv2.absdiff(reference, test).astype(np.float32) * 3
        return np.asarray(np.clip(diff, 0, 255), np.uint8)
    if mode == "checker":
        h, w = reference.shape[:2]
        cell = max(8, max(h, w) // 12)
        yy, xx = np.mgrid[0:h, 0:w]
        mask = ((yy // cell + xx // cell) % 2).astype(bool)
        out = reference.copy()
        out[mask] = test[mask]
        return out
    raise ValueError(f"unknown overlay {mode!r}")


IMAGES = ("reference", "test", "blend", "difference", "checker")


class LiveState:
    """Latest result, history and views, shared between the loop and the page (thread-safe)."""

    def __init__(self, history_s: float = 60.0) -> None:
        self._lock = threading.Lock()
        self.history_s = history_s
        self.latest: LiveResult | None = None
        self.error: str | None = None
        self.history: deque[dict[str, Any]] = deque()
        self._views: tuple[U8, U8, U8] | None = None
        self._times: deque[float] = deque(maxlen=20)
        self.started = time.monotonic()
        #: Whether the page/terminal offers the calibration key (``run_live(calibrate=)``).
        self.can_calibrate = False
        #: Last calibration: ``{"status": "requested"/"running"/"done"/"failed", ...}``.
        self.calibration: dict[str, Any] | None = None
        self._calibration_requested = False

    def request_calibration(self) -> bool:
        """Ask the live loop to shoot calibration stills and calibrate after the current
        pair; ``False`` when it cannot (no calibration key, or one already under way)."""
        with self._lock:
            if not self.can_calibrate or self._calibration_requested:
                return False
            if self.calibration is not None and self.calibration["status"] == "running":
                return False
            self._calibration_requested = True
            self.calibration = {"status": "requested", "message": "calibration requested"}
            return True

    def take_calibration_request(self) -> bool:
        """``True`` once per request (the loop then runs the calibration)."""
        with self._lock:
            requested, self._calibration_requested = self._calibration_requested, False
            return requested

    def set_calibration(self, outcome: dict[str, Any]) -> None:
        with self._lock:
            self.calibration = dict(outcome)

    def update(self, result: LiveResult, views: tuple[U8, U8, U8] | None) -> None:
        now = time.monotonic()
        data = result.to_dict()
        point = {"t": now - self.started, **{k: data[k] for k in HISTORY_KEYS}}
        with self._lock:
            self.latest = result
            self.error = None
            self._views = views
            self._times.append(now)
            self.history.append(point)
            while self.history and self.history[0]["t"] < point["t"] - self.history_s:
                self.history.popleft()

    def fail(self, message: str) -> None:
        with self._lock:
            self.error = message

    def pairs_per_s(self) -> float | None:
        with self._lock:
            if len(self._times) < 2 or self._times[-1] == self._times[0]:
                return None
            return (len(self._times) - 1) / (self._times[-1] - self._times[0])

    def snapshot(self) -> dict[str, Any]:
        """The ``/state.json`` object: ``latest`` (or null), ``history``, ``error``, rate."""
        rate = self.pairs_per_s()
        with self._lock:
            return {
                "latest": None if self.latest is None else self.latest.to_dict(),
                "history": list(self.history),
                "error": self.error,
                "pairs_per_s": rate,
                "can_calibrate": self.can_calibrate,
                "calibration": self.calibration,
            }

    def image(self, name: str) -> bytes | None:
        """JPEG of a view or overlay (:data:`IMAGES`); ``None`` before the first result."""
        with self._lock:
            views, latest = self._views, self.latest
        if views is None or latest is None:
            return None
        ref, test, warped = views
        if name == "reference":
            return encode_jpeg(ref)
        if name == "test":
            return encode_jpeg(test)
        ev = latest.ev_offset if math.isfinite(latest.ev_offset) else 0.0
        return encode_jpeg(overlay(ref, warped, name, gain=2.0**-ev))


# --------------------------------------------------------------------------- loop


def _parallax_words(parallax: dict[str, Any] | None) -> str:
    if parallax is None:
        return "cannot tell"
    if parallax.get("near_px") is not None:
        return f"near {parallax['near_px']:.1f}/far {parallax['far_px']:.1f} px"
    return f"{parallax['parallax_px']:.1f} px apart"


def format_line(result: LiveResult, rate: float | None = None) -> str:
    """One plain line for the terminal mode."""
    k = result.keystone
    wb = "/".join(f"{v:.2f}" for v in result.white_balance)
    focus = f"{result.focus_ratio:.2f}" if math.isfinite(result.focus_ratio) else "n/a"
    speed = "" if rate is None else f" {rate:.1f} pairs/s"
    return (
        f"#{result.index} {result.mode:5s} {result.verdict.upper():6s} "
        f"roll {result.roll_deg:+.3f} deg  scale {result.scale_pct:+.3f} %  "
        f"shift {result.shift_px[0]:+.2f},{result.shift_px[1]:+.2f} px  "
        f"keystone {k['horizontal_pct']:+.2f}/{k['vertical_pct']:+.2f} %  "
        f"EV {result.ev_offset:+.2f}  wb {wb}  focus {focus}  "
        f"coverage {result.coverage:.1%}  "
        f"parallax {_parallax_words(result.parallax)}  "
        f"{result.latency_ms:.0f} ms{speed}"
    )


def run_live(
    source: PairSource,
    analyzer: LiveAnalyzer,
    state: LiveState,
    stop: threading.Event,
    max_pairs: int | None = None,
    on_result: Callable[[LiveResult], None] | None = None,
    min_interval_s: float = 0.0,
    on_error: Callable[[str], None] | None = None,
    calibrate: Callable[[], dict[str, Any]] | None = None,
    on_calibration: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Read and analyse pairs until ``stop`` is set or ``max_pairs`` are done.

    A failed analysis (too few matches, a dropped frame) is recorded in ``state.error`` and
    the loop goes on; errors reading from the source propagate. Returns the pairs analysed.

    ``calibrate`` (the calibration key, e.g. a
    :class:`~expokit.calibration.live_calibration.LiveCalibrator`) runs between two pairs
    when :meth:`LiveState.request_calibration` was called, with the live view paused (the
    cameras are the loop's); its outcome goes to ``state.calibration`` and
    ``on_calibration``.
    """
    state.can_calibrate = calibrate is not None
    done = 0
    while not stop.is_set() and (max_pairs is None or done < max_pairs):
        if calibrate is not None and state.take_calibration_request():
            state.set_calibration({"status": "running", "message": "shooting calibration stills"})
            outcome = calibrate()
            state.set_calibration(outcome)
            if on_calibration is not None:
                on_calibration(outcome)
        started = time.monotonic()
        ref_jpeg, test_jpeg = source.read_pair()
        try:
            result = analyzer.analyze(ref_jpeg, test_jpeg)
        except ExpokitError as exc:
            state.fail(str(exc))
            if on_error is not None:
                on_error(str(exc))
            stop.wait(0.2)
            continue
        state.update(result, analyzer.views)
        done += 1
        if on_result is not None:
            on_result(result)
        rest = min_interval_s - (time.monotonic() - started)
        if rest > 0:
            stop.wait(rest)
    return done


# --------------------------------------------------------------------------- sources


class RigPreviewSource:
    """Live-view pairs from the rig's two bodies (``capture_preview()`` of each role)."""

    def __init__(self, rig: Any) -> None:
        self.rig = rig
        for role in ("reference", "test"):
            if not callable(getattr(rig.cameras.get(role), "capture_preview", None)):
                raise ExpokitError(
                    f"the {role} camera's backend offers no live view (capture_preview)"
                )

    def read_pair(self) -> tuple[bytes, bytes]:
        ref = self.rig.cameras["reference"].capture_preview()
        test = self.rig.cameras["test"].capture_preview()
        return bytes(ref), bytes(test)


def content_map(
    size: tuple[int, int], roll_deg: float, scale: float, shift: tuple[float, float]
) -> F64:
    """Reference -> test pixel map: test content rotated ``roll_deg`` counter-clockwise on
    screen, ``scale`` times larger, displaced by ``shift`` (conventions of
    :mod:`~expokit.calibration.alignment_check`)."""
    w, h = size
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    t = math.radians(roll_deg)
    rot = np.array([[math.cos(t), math.sin(t), 0], [-math.sin(t), math.cos(t), 0], [0, 0, 1]])
    to_c = np.array([[1, 0, -c[0]], [0, 1, -c[1]], [0, 0, 1.0]])
    from_c = np.array([[1, 0, c[0] + shift[0]], [0, 1, c[1] + shift[1]], [0, 0, 1.0]])
    return np.asarray(from_c @ np.diag([scale, scale, 1.0]) @ rot @ to_c, np.float64)


class SyntheticPreviewSource:
    """Stand-in live view: a generated scene seen by a reference and a misaligned test body.

    The test view is the scene warped so its content is rotated ``roll_deg``, ``scale``
    times larger and shifted ``shift`` px (mirror undone), mirrored by ``flip``, ``ev`` EV
    darker or brighter in linear light, with a little noise per frame; both are sRGB JPEGs.
    ``jitter_px`` moves the whole scene a little between frames (a hand-held feel).
    """

    def __init__(
        self,
        size: tuple[int, int] = (1024, 680),
        roll_deg: float = 0.0,
        scale: float = 1.0,
        shift: tuple[float, float] = (0.0, 0.0),
        flip: str = "horizontal",
        ev: float = 0.0,
        noise: float = 0.004,
        jitter_px: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.size = size
        self.margin = 96
        w, h = size
        self.scene = feature_texture(w + 2 * self.margin, h + 2 * self.margin, seed)
        self.map = content_map(size, roll_deg, scale, shift)
        self.flip = Flip(flip)
        self.gain = 2.0**ev
        self.noise = noise
        self.jitter_px = jitter_px
        self.rng = np.random.default_rng(seed + 1)
        self.frames = 0

    def _jpeg(self, linear: npt.NDArray[np.float32]) -> bytes:
        noisy = linear + self.rng.normal(0, self.noise, linear.shape).astype(np.float32)
        encoded = np.asarray(srgb_encode(np.clip(noisy, 0, 1))) * 255 + 0.5
        return encode_jpeg(np.clip(encoded, 0, 255).astype(np.uint8)[:, :, ::-1], 92)

    def read_pair(self) -> tuple[bytes, bytes]:
        import cv2

        w, h = self.size
        dx, dy = self.rng.normal(0, self.jitter_px, 2) if self.jitter_px else (0.0, 0.0)
        crop = np.array([[1, 0, self.margin + dx], [0, 1, self.margin + dy], [0, 0, 1.0]])
        # reference pixel -> scene pixel is ``crop``; test (mirror undone) -> reference is
        # inv(map), so test pixel -> scene is crop @ inv(map).
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        ref = cv2.warpPerspective(self.scene, crop, (w, h), flags=flags)
        test = cv2.warpPerspective(self.scene, crop @ np.linalg.inv(self.map), (w, h), flags=flags)
        flipped = np.asarray(self.flip.apply(np.asarray(test, np.float32) * self.gain), np.float32)
        self.frames += 1
        return self._jpeg(np.asarray(ref, np.float32)), self._jpeg(flipped)

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        while True:
            yield self.read_pair()
