"""Clean-clone counterparts of the real-data accuracy tests (issue 12): known answers, no
../shared/data.

* Geometry: two views of a procedural texture (:func:`expokit.core.synthetic.demo_scene`)
  related by a known homography, the test view mirrored and/or exposed differently: the
  flip is recovered exactly and the mean grid error is < 0.3 px (the bar of
  :mod:`expokit.curation.truth`). Counterpart of test_geometry_pipeline.py's graf tests.
* Sync: a known offset of several seconds between two clips cut from one synthetic
  soundtrack (the "N-secs-in" clips of test_sync.py): offset < 1 ms, frame map exact.
  Drift is covered by tests/test_simulation_chain.py::test_audio_drift_recovered_on_long_clip
  (known offset and +-150/300 ppm drift: offset < 1 ms, drift <= 2 ppm) and the board stills
  with a known homography + flip by tests/test_simulation_chain.py's chain; not repeated here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from expokit.calibration.geometry import calibrate_geometry, load_rig_calibration
from expokit.calibration.homography import homography_grid_error
from expokit.calibration.mirror import Flip
from expokit.calibration.sync import synchronize
from expokit.core.synthetic import demo_scene
from expokit.core.video_io import ffmpeg_exe

#: A rig-like test -> reference homography: ~12 px shift, 1 deg rotation, 2 % scale, perspective.
RIG_H = np.array([[1.02, 0.018, -12.5], [-0.017, 1.01, 7.3], [2e-5, -1e-5, 1.0]])
SIZE = (480, 384)  # (width, height) of both views
GRID_TOL_PX = 0.3


@pytest.fixture(scope="module")
def canvas() -> npt.NDArray[np.uint8]:
    """8-bit sRGB-ish rendering of the procedural texture scene, larger than the views."""
    linear = demo_scene("texture", 720, 800, seed=3)
    return np.round(np.clip(linear, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)


def _views(
    canvas: npt.NDArray[np.uint8], h_test_to_ref: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """Reference and test views cut from inside ``canvas``, related by ``h_test_to_ref``."""
    shift = np.array([[1, 0, 150.0], [0, 1, 150.0], [0, 0, 1.0]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    ref = cv2.warpPerspective(canvas, shift, SIZE, flags=flags)
    test = cv2.warpPerspective(canvas, shift @ h_test_to_ref, SIZE, flags=flags)
    return np.asarray(ref, np.uint8), np.asarray(test, np.uint8)


def _expose(image: npt.NDArray[np.uint8], ev: float, seed: int = 0) -> npt.NDArray[np.uint8]:
    """Darken by ``ev`` stops (brighten for ev < 0), Gaussian noise sigma 2, round to uint8."""
    rng = np.random.default_rng(seed)
    out = image.astype(np.float64) * 2.0**-ev + rng.normal(0.0, 2.0, image.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _write(path: Path, image: npt.NDArray[np.uint8]) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


@pytest.mark.parametrize(
    ("mirrored", "ev"),
    [(False, 0.0), (True, 0.0), (True, 2.5)],
    ids=["plain", "mirrored", "mirrored-2.5ev-darker"],
)
def test_known_homography_and_flip_recovered(
    canvas: npt.NDArray[np.uint8], tmp_path: Path, mirrored: bool, ev: float
) -> None:
    ref, test = _views(canvas, RIG_H)
    if ev:
        test = _expose(test, ev)
        assert test.mean() < ref.mean() / 3  # really darker
    if mirrored:
        test = np.ascontiguousarray(test[:, ::-1])
    ref_path = _write(tmp_path / "ref.png", ref)
    test_path = _write(tmp_path / "test.png", test)
    calib = calibrate_geometry([ref_path], [test_path], tmp_path / "out")
    assert calib.flip is (Flip.HORIZONTAL if mirrored else Flip.NONE)
    assert not calib.mirror.ambiguous
    assert calib.test_size == SIZE
    mean, worst = homography_grid_error(calib.homography, RIG_H, calib.test_size)
    assert mean < GRID_TOL_PX, f"mean grid error {mean:.3f} px, max {worst:.3f} px"
    assert worst < 1.0
    # The written file says the same thing.
    saved = load_rig_calibration(tmp_path / "out")
    assert saved.flip is calib.flip
    assert homography_grid_error(saved.homography, RIG_H, SIZE)[0] < GRID_TOL_PX


def test_wrong_truth_is_detected(canvas: npt.NDArray[np.uint8], tmp_path: Path) -> None:
    """The grid-error bar can fail: a 1 px shift of the truth exceeds it."""
    ref, test = _views(canvas, RIG_H)
    calib = calibrate_geometry(
        [_write(tmp_path / "ref.png", ref)], [_write(tmp_path / "test.png", test)], tmp_path / "o"
    )
    shifted = np.array([[1, 0, 1.0], [0, 1, 0], [0, 0, 1.0]]) @ RIG_H
    assert homography_grid_error(calib.homography, shifted, SIZE)[0] > GRID_TOL_PX


# --------------------------------------------------------------------------- sync

AUDIO_RATE = 48000
FPS = 25


def _soundtrack(seconds: float, seed: int = 0) -> npt.NDArray[np.float32]:
    """Non-periodic band-limited noise bursts of random length and level (no repetition)."""
    rng = np.random.default_rng(seed)
    count = int(seconds * AUDIO_RATE)
    noise = np.convolve(rng.standard_normal(count), np.ones(6) / 6, mode="same")
    envelope = np.repeat(rng.uniform(0.05, 1.0, count // 2400 + 1), 2400)[:count]
    return (0.3 * noise * envelope).astype(np.float32)


def _clip(path: Path, audio: npt.NDArray[np.float32], start_s: float, seconds: float) -> None:
    """A 64x48 movie at 25 fps with ``audio[start_s : start_s + seconds]`` as its soundtrack."""
    first = round(start_s * AUDIO_RATE)
    part = audio[first : first + round(seconds * AUDIO_RATE)]
    wav = path.with_suffix(".f32")
    wav.write_bytes(part.tobytes())
    subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=size=64x48:rate={FPS}:duration={seconds}",
         "-f", "f32le", "-ar", str(AUDIO_RATE), "-ac", "1", "-i", str(wav),
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-c:a", "pcm_s16le", "-shortest", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    wav.unlink()


@pytest.mark.parametrize("start_s", [3.0, 7.0])
def test_known_offset_within_one_ms(tmp_path: Path, start_s: float) -> None:
    """B starts ``start_s`` into A's soundtrack: an event at t in A is at t - start_s in B."""
    audio = _soundtrack(16.0, seed=int(start_s))
    full, part = tmp_path / "full.mov", tmp_path / "part.mov"
    _clip(full, audio, 0.0, 15.0)
    _clip(part, audio, start_s, 15.0 - start_s)
    result = synchronize(full, part)
    assert result.method == "audio"
    assert abs(result.offset_s - (-start_s)) < 1e-3
    assert result.confidence > 0.8
    assert result.media_a.decoded_frames == 15 * FPS
    assert result.offset_frames_a == pytest.approx(-start_s * FPS, abs=0.03)
    assert result.frame_map is not None
    assert result.frame_map[200] == 200 - round(FPS * start_s)
    assert result.frame_map[0] is None
    swapped = synchronize(part, full)
    assert abs(swapped.offset_s - start_s) < 1e-3
