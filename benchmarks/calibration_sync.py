"""Audio sync error and speed on 10-minute clips: expokit against a plain FFT correlation.

Run from the repository root::

    python benchmarks/calibration_sync.py                  # 10-minute clips, 3 repeats
    python benchmarks/calibration_sync.py --minutes 3 --repeat 1
    python benchmarks/calibration_sync.py --keep /tmp/syncbench   # keep the made clips

It takes about two and a half minutes on a 2-core machine with the defaults (half of it
making the clips, most of the rest the naive correlations).

Clips (made with ffmpeg in a temporary folder from the shared data's audio,
``../shared/data/video`` or ``$EXPOKIT_SHARED_DATA/video``):

A
    ``--minutes`` of real sound: random 1.5-4 s pieces of the shared clips' audio
    (``audio_offset_avbs/full.mp4``, both rooftop phones, ``Megamind.avi``) with random
    gains and a little noise, 48 kHz mono, AAC 128 kb/s in ``.m4a``. Pieces are shuffled, not
    looped: a looped clip correlates with itself one loop later, so no offset would be
    unambiguous.
B (same clock)
    A cut at a known sample (``--offset`` seconds, rounded to a 48 kHz sample) with its own
    noise, 80 % of the gain, AAC: an event at ``t`` in A is at ``t - offset`` in B.
B (drifting clock)
    The same, read as 47 998 Hz and resampled to 48 kHz: B's clock is +41.7 ppm slow, so the
    offset changes by 25 ms over 10 minutes.

Ways measured (median of ``--repeat`` runs, ``time.perf_counter``)
------------------------------------------------------------------
naive
    Decode both tracks at their own rate (48 kHz, mono) with ffmpeg and cross-correlate the
    whole tracks with one full-length real FFT (``np.fft.rfft`` padded to the next power of
    two), parabolic interpolation of the peak.
expokit
    ``decode_audio(path, 16000)`` for both, then :func:`expokit.calibration.sync.audio_offset`
    (coarse whole-track correlation at 2 kHz, fine 10 s windows at 16 kHz around the peak,
    drift fit), decoding one file after the other like naive; and ``synchronize(a, b)`` end
    to end (ffmpeg probe too, both files decoded at once on two threads).

Errors are against the known cut: the offset at ``t_A = 0`` and, for the drifting pair,
the predicted time in B of an event at the end of A. Target: expokit error < 1 ms and
faster than naive.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RATE = 48000
DRIFT_DECLARED_RATE = 47998  # B read at this rate: +41.67 ppm


def shared_video_dir() -> Path:
    root = os.environ.get("EXPOKIT_SHARED_DATA")
    return (Path(root) if root else REPO.parent / "shared" / "data") / "video"


# --------------------------------------------------------------------------- clips


def program(seconds: float, seed: int = 0) -> np.ndarray:
    """``seconds`` of shuffled pieces of the shared audio at 48 kHz, float32 mono."""
    from expokit.calibration.synthetic import shuffled_audio

    video = shared_video_dir()
    sources = [
        video / "audio_offset_avbs" / "full.mp4",
        video / "twoview_rooftop_pulsejet" / "left.mp4",
        video / "twoview_rooftop_pulsejet" / "right.mp4",
        video / "Megamind.avi",
    ]
    missing = [s for s in sources if not s.is_file()]
    if missing:
        sys.exit(f"shared data missing: {', '.join(map(str, missing))}")
    return shuffled_audio(sources, seconds, RATE, seed)


def encode(path: Path, samples: np.ndarray, declared_rate: int = RATE) -> None:
    """AAC-encode mono float32 ``samples`` read as ``declared_rate`` Hz, output 48 kHz."""
    from expokit.core.video_io import ffmpeg_exe

    subprocess.run(
        [
            ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "f32le", "-ar", str(declared_rate), "-ac", "1", "-i", "-",
            "-ar", str(RATE), "-c:a", "aac", "-b:a", "128k", str(path),
        ],
        input=samples.tobytes(),
        check=True,
    )  # fmt: skip


def make_clips(folder: Path, minutes: float, offset_s: float) -> dict[str, Any]:
    """A, B (same clock) and B (drifting clock) in ``folder``, with their true offsets."""
    seconds = minutes * 60
    base = program(seconds)
    rng = np.random.default_rng(1)
    cut = round(offset_s * RATE)
    b = base[cut:] * 0.8 + rng.normal(0, 0.002, base.size - cut).astype(np.float32)
    encode(folder / "a.m4a", base)
    encode(folder / "b.m4a", b)
    drift_cut = round(offset_s * DRIFT_DECLARED_RATE)
    drifting = base[drift_cut:] * 0.8 + rng.normal(0, 0.002, base.size - drift_cut)
    encode(folder / "b_drift.m4a", drifting.astype(np.float32), DRIFT_DECLARED_RATE)
    stretch = RATE / DRIFT_DECLARED_RATE
    return {
        "same clock": {
            "b": folder / "b.m4a",
            "offset_s": -cut / RATE,
            "in_b": lambda t: t - cut / RATE,
        },
        "drifting clock (+41.7 ppm)": {
            "b": folder / "b_drift.m4a",
            "offset_s": -drift_cut / DRIFT_DECLARED_RATE,
            "in_b": lambda t: t * stretch - drift_cut / DRIFT_DECLARED_RATE,
        },
    }


# --------------------------------------------------------------------------- the two ways


def naive_offset(a: np.ndarray, b: np.ndarray, rate: int) -> float:
    """Whole-track FFT cross-correlation at ``rate``; ``t_B - t_A`` in seconds."""
    size = 1 << (a.size + b.size - 2).bit_length()  # next power of two: no wrap-around
    spectrum = np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size)
    c = np.fft.irfft(spectrum, size)
    i = int(np.argmax(c))
    delta = 0.0
    if 0 < i < size - 1:
        y0, y1, y2 = c[i - 1], c[i], c[i + 1]
        delta = 0.5 * float(y0 - y2) / float(y0 - 2 * y1 + y2)
    lag = i if i < b.size else i - size  # indices past len(b) are negative lags
    return (lag + delta) / rate


def timed(func: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def run_case(a_path: Path, case: dict[str, Any], repeat: int, duration_s: float) -> None:
    from expokit.calibration.sync import synchronize
    from expokit.calibration.sync_audio import audio_offset
    from expokit.calibration.sync_record import SyncConfig
    from expokit.core.video_io import decode_audio

    config = SyncConfig()
    b_path = case["b"]
    t_end = duration_s - abs(case["offset_s"]) - 5.0  # an event near the end of the overlap

    def decode_both(rate: int) -> tuple[np.ndarray, np.ndarray]:
        return decode_audio(a_path, rate), decode_audio(b_path, rate)

    def measure_naive() -> tuple[float, float, float]:
        # In a function so the 48 kHz tracks (~200 MB) are freed before expokit runs.
        decode_s, (a48, b48) = timed(lambda: decode_both(RATE), repeat)
        correlate_s, offset = timed(lambda: naive_offset(a48, b48, RATE), repeat)
        return decode_s, correlate_s, offset

    dec_naive, cor_naive, naive = measure_naive()
    dec_ours, (a16, b16) = timed(lambda: decode_both(config.sample_rate), repeat)
    cor_ours, ours = timed(lambda: audio_offset(a16, b16, config.sample_rate, config), repeat)
    end_to_end, result = timed(lambda: synchronize(a_path, b_path, config), repeat)

    truth = case["offset_s"]
    truth_end = case["in_b"](t_end)
    drift_ppm = ours.drift.drift_ppm if ours.drift and ours.drift.estimated else 0.0
    ours_end = t_end + ours.offset_s + drift_ppm * 1e-6 * t_end
    rows = [
        ("naive 48 kHz full FFT", dec_naive, cor_naive, naive - truth, naive + t_end - truth_end),
        ("expokit audio_offset", dec_ours, cor_ours, ours.offset_s - truth, ours_end - truth_end),
    ]
    print(f"\n{case['b'].name}: true offset {truth:+.6f} s (t_B - t_A)")
    print(f"{'way':24s} {'decode s':>9s} {'correlate s':>12s} {'total s':>8s} "
          f"{'error t=0 ms':>13s} {f'error t={t_end:.0f}s ms':>16s}")  # fmt: skip
    for name, dec, cor, err0, err_end in rows:
        print(f"{name:24s} {dec:9.3f} {cor:12.3f} {dec + cor:8.3f} "
              f"{err0 * 1e3:+13.3f} {err_end * 1e3:+16.3f}")  # fmt: skip
    print(f"{'expokit synchronize()':24s} {'':9s} {'':12s} {end_to_end:8.3f} "
          f"{(result.offset_s - truth) * 1e3:+13.3f} "
          f"{(result.time_in_b(t_end) - truth_end) * 1e3:+16.3f}")  # fmt: skip
    estimated = "estimated" if ours.drift and ours.drift.estimated else "not estimated"
    print(f"expokit: confidence {ours.confidence:.2f}, drift {drift_ppm:+.1f} ppm ({estimated})")
    print(f"ratio naive/expokit: correlate {cor_naive / cor_ours:.1f}x, "
          f"decode+correlate {(dec_naive + cor_naive) / (dec_ours + cor_ours):.1f}x, "
          f"naive total / synchronize() {(dec_naive + cor_naive) / end_to_end:.1f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of clip A")
    parser.add_argument("--offset", type=float, default=123.4567, help="where B starts in A (s)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--keep", type=Path, default=None, help="make the clips here and keep")
    args = parser.parse_args()
    import numpy

    print(f"python {platform.python_version()}, numpy {numpy.__version__}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        cases = make_clips(folder, args.minutes, args.offset)
        print(f"made {args.minutes:g}-minute clips in {time.perf_counter() - start:.1f} s "
              f"({folder})")  # fmt: skip
        for case in cases.values():
            run_case(folder / "a.m4a", case, args.repeat, args.minutes * 60)


if __name__ == "__main__":
    main()
